package mmkg.neo4j;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.neo4j.configuration.Config;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.Label;
import org.neo4j.graphdb.Node;
import org.neo4j.graphdb.Transaction;
import org.neo4j.io.fs.DefaultFileSystemAbstraction;
import org.neo4j.kernel.impl.security.User;
import org.neo4j.logging.NullLogProvider;
import org.neo4j.memory.EmptyMemoryTracker;
import org.neo4j.server.security.SecureHasher;
import org.neo4j.server.security.SystemGraphCredential;
import org.neo4j.server.security.auth.CommunitySecurityModule;
import org.neo4j.server.security.auth.FileUserRepository;

/**
 * mmkg's local Neo4j server: Neo4j Community embedded, with its Bolt connector on 127.0.0.1 only.
 *
 * <p>Usage: {@code java -jar mmkg-neo4j-launcher.jar --home DIR --logs DIR [--port 7687] [--pagecache 256m]
 * [--tx-memory 512m]}. The password of user {@code neo4j} is read from the environment variable
 * {@code MMKG_NEO4J_LAUNCHER_PASSWORD} (so it never shows in {@code ps}) and applied on every start, which
 * makes the caller's password file the one source of truth. On a brand-new home the password is
 * written to the initial-user file before the first boot, so the default neo4j/neo4j login never
 * exists. SIGTERM shuts the DBMS down cleanly (shutdown hook).
 */
public final class Launcher {
    static final String PASSWORD_ENV = "MMKG_NEO4J_LAUNCHER_PASSWORD";
    private static final long T0 = System.nanoTime();

    private Launcher() {}

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable t) {
            t.printStackTrace();
            Throwable root = t;
            while (root.getCause() != null && root.getCause() != root) {
                root = root.getCause();
            }
            // One last line that says why, for the caller to show.
            System.err.println("mmkg-neo4j: failed to start: " + root);
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
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
        Path initialUsers = null;
        if (fresh) {
            log("initialising a new database in " + home);
            initialUsers = writeInitialPassword(home, password);
            if (initialUsers == null) {
                // Fallback: create the system database and set the password while nothing can connect.
                DatabaseManagementService boot = build(home, logs, port, pagecache, txMemory, false);
                try {
                    setPassword(boot, password);
                } finally {
                    boot.shutdown();
                }
            }
        }

        // The hook is in place before the DBMS is built, and waits for a build in progress, so a SIGTERM
        // during start-up also ends in a clean shutdown.
        AtomicReference<DatabaseManagementService> running = new AtomicReference<>();
        CountDownLatch built = new CountDownLatch(1);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                built.await(300, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            DatabaseManagementService dbms = running.getAndSet(null);
            if (dbms != null) {
                log("shutting down");
                dbms.shutdown();
                log("stopped");
            }
            stopped.countDown();
        }, "mmkg-neo4j-shutdown"));
        try {
            running.set(build(home, logs, port, pagecache, txMemory, true));
        } finally {
            built.countDown();
        }
        DatabaseManagementService dbms = running.get();
        if (dbms == null) {
            return; // shut down while starting
        }
        if (initialUsers != null) {
            // Consumed when the system database was created; no need to keep a password hash around.
            Files.deleteIfExists(initialUsers);
        } else if (!fresh && !passwordMatches(dbms, password)) {
            setPassword(dbms, password);
        }
        log(String.format("ready bolt://127.0.0.1:%d (%.1f s)", port, (System.nanoTime() - T0) / 1e9));
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
                // Nothing but Bolt clients on 127.0.0.1 may reach or be reached: no usage reports.
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .setConfig(GraphDatabaseInternalSettings.udc_network_enabled, false)
                // Bolt waits 5 s twice on shutdown by default, after the databases are already closed.
                .setConfig(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, Duration.ofSeconds(1))
                .setConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, Duration.ofSeconds(1))
                .build();
    }

    /**
     * Writes the initial-user file ({@code data/dbms/auth.ini}, what {@code neo4j-admin dbms set-initial-password}
     * writes) that a new system database takes its neo4j user from: no default password ever exists, and
     * there is one boot instead of two. Uses Neo4j-internal classes, so any failure falls back to the
     * two-boot path (null).
     */
    private static Path writeInitialPassword(Path home, String password) {
        try {
            Config config = Config.newBuilder().set(GraphDatabaseSettings.neo4j_home, home).build();
            Path file = CommunitySecurityModule.getInitialUserRepositoryFile(config);
            Files.createDirectories(file.getParent());
            FileUserRepository repo = new FileUserRepository(
                    new DefaultFileSystemAbstraction(), file, NullLogProvider.getInstance(), EmptyMemoryTracker.INSTANCE);
            repo.start();
            try {
                SystemGraphCredential credential = SystemGraphCredential.createCredentialForPassword(
                        password.getBytes(StandardCharsets.UTF_8), new SecureHasher());
                repo.create(new User("neo4j", null, credential, false, false));
            } finally {
                repo.shutdown();
            }
            return file;
        } catch (Exception | LinkageError e) {
            log("could not write the initial password file (" + e + "); setting the password with a first boot");
            return null;
        }
    }

    /**
     * Whether user neo4j already has this password, read through the core API: no Cypher, which on a
     * cold JVM costs many seconds of query compilation on every start.
     */
    private static boolean passwordMatches(DatabaseManagementService dbms, String password) {
        try (Transaction tx = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).beginTx()) {
            Node user = tx.findNode(Label.label("User"), "name", "neo4j");
            if (user == null || Boolean.TRUE.equals(user.getProperty("passwordChangeRequired", false))) {
                return false;
            }
            Object stored = user.getProperty("credentials", null);
            return stored instanceof String text
                    && SystemGraphCredential.deserialize(text, new SecureHasher())
                            .matchesPassword(password.getBytes(StandardCharsets.UTF_8));
        } catch (Exception | LinkageError e) {
            return false; // fall back to setting it
        }
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
