#!/usr/bin/env bash
# The main job on the embedded store: train the offline encoder once, ingest the fashion catalog,
# search it by text and by image, and print the graph's counts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
data="${MMKG_DATA:-../shared/data}"
export MMKG_HOME="${MMKG_HOME:-$PWD/.mmkg}"
mmkg=.venv/bin/mmkg

echo "== training the lit encoder's heads on $data/flickr8k/train (once; kept in $MMKG_HOME)"
$mmkg train encoder --data "$data/flickr8k/train" --if-missing
echo "== ingesting $data/fashion"
$mmkg ingest "$data/fashion"
# the last asks in Chinese for blue jeans for men: the catalog is English (README, Other languages)
for q in "white sports shoes for men" "black leather belt" "pink top for women" "男士蓝色牛仔裤"; do
  echo "== mmkg search \"$q\" -k 5"
  $mmkg search "$q" -k 5
done
echo "== mmkg search --image $data/fashion/images/10003.jpg -k 5   (a photo of a product: similar products)"
$mmkg search --image "$data/fashion/images/10003.jpg" -k 5
echo "== shopper queries: precision@10 from the stated attributes, every system on this workspace"
.venv/bin/python benchmarks/shopper_queries.py
echo "== mmkg stats"
$mmkg stats
