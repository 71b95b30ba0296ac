package mmkg.neo4j;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;

/**
 * mmkg's local Neo4j server: Neo4j Community embedded, with its Bolt connector on 127.0.0.1 only.
 *
 * <p>Usage: {@code java -jar mmkg-neo4j-launcher.jar --home DIR --logs DIR [--port 7687] [--pagecache 256m]
 * [--tx-memory 512m]}. The password of user {@code neo4j} is read from the environment variable
 * {@code MMKG_NEO4J_LAUNCHER_PASSWORD} (so it never shows in {@code ps}) and applied on every start, which
 * makes the caller's password file the one source of truth. On a brand-new home the password is set
 * with Bolt still closed, so the default neo4j/neo4j login is never reachable. SIGTERM shuts the DBMS
 * down cleanly (shutdown hook).
 */
public final class Launcher {
    static final String PASSWORD_ENV = "MMKG_NEO4J_LAUNCHER_PASSWORD";

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Path home = null;
        Path logs = null;
        int port = 7687;
        long pagecache = parseBytes("256m");
        long txMemory = parseBytes("512m");
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = i + 1 < args.length ? args[i + 1] : null;
            switch (a) {
                case "--home" -> { home = Path.of(require(a, v)).toAbsolutePath(); i++; }
                case "--logs" -> { logs = Path.of(require(a, v)).toAbsolutePath(); i++; }
                case "--port" -> { port = Integer.parseInt(require(a, v)); i++; }
                case "--pagecache" -> { pagecache = parseBytes(require(a, v)); i++; }
                case "--tx-memory" -> { txMemory = parseBytes(require(a, v)); i++; }
                default -> fail("unknown argument " + a);
            }
        }
        if (home == null) {
            fail("--home is required");
        }
        if (logs == null) {
            logs = home.resolve("logs");
        }
        String password = System.getenv(PASSWORD_ENV);
        if (password == null || password.isEmpty()) {
            fail("environment variable " + PASSWORD_ENV + " must hold the password for user neo4j");
        }
        Files.createDirectories(home);
        Files.createDirectories(logs);

        boolean fresh = !Files.exists(home.resolve("data").resolve("databases").resolve("system"));
        if (fresh) {
            // First start: create the system database and set the password while nothing can connect.
            log("initialising a new database in " + home);
            DatabaseManagementService boot = build(home, logs, port, pagecache, txMemory, false);
            try {
                setPassword(boot, password);
            } finally {
                boot.shutdown();
            }
        }

        DatabaseManagementService dbms = build(home, logs, port, pagecache, txMemory, true);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            log("shutting down");
            try {
                dbms.shutdown();
            } finally {
                log("stopped");
                stopped.countDown();
            }
        }, "mmkg-neo4j-shutdown"));
        if (!fresh) {
            setPassword(dbms, password);
        }
        log("ready bolt://127.0.0.1:" + port);
        stopped.await();
    }

    private static DatabaseManagementService build(
            Path home, Path logs, int port, long pagecache, long txMemory, boolean bolt) {
        return new DatabaseManagementServiceBuilder(home)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                .setConfig(GraphDatabaseSettings.logs_directory, logs)
                .setConfig(GraphDatabaseSettings.pagecache_memory, pagecache)
                .setConfig(GraphDatabaseSettings.memory_transaction_global_max_size, txMemory)
                .setConfig(GraphDatabaseSettings.keep_logical_logs, "256M size")
                .setConfig(BoltConnector.enabled, bolt)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                .setConfig(HttpConnector.enabled, false)
                .build();
    }

    /** Sets the neo4j user's password; an unchanged password is not an error. */
    private static void setPassword(DatabaseManagementService dbms, String password) {
        try {
            dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                    "ALTER USER neo4j SET PLAINTEXT PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
        } catch (RuntimeException e) {
            String msg = String.valueOf(e.getMessage());
            if (!msg.contains("cannot be the same")) {
                throw e;
            }
        }
    }

    private static long parseBytes(String s) {
        String t = s.trim().toLowerCase();
        long mult = 1;
        char last = t.charAt(t.length() - 1);
        if (last == 'k' || last == 'm' || last == 'g') {
            mult = last == 'k' ? 1L << 10 : last == 'm' ? 1L << 20 : 1L << 30;
            t = t.substring(0, t.length() - 1);
        }
        return Long.parseLong(t) * mult;
    }

    private static String require(String flag, String value) {
        if (value == null) {
            fail(flag + " needs a value");
        }
        return value;
    }

    private static void log(String msg) {
        System.out.println("mmkg-neo4j: " + msg);
        System.out.flush();
    }

    private static void fail(String msg) {
        System.err.println("mmkg-neo4j: " + msg);
        System.exit(2);
    }
}
