#!/bin/sh
# Topics of a scale-out deployment (kafka.bootstrapServers set). The relay and the
# workers create them on first use with `kafka.partitions` partitions; create them
# yourself to choose retention. Partitions bound how many workers share the work.
# Usage: BOOTSTRAP=kafka:9092 PARTITIONS=4 sh topics.sh
set -eu
BOOTSTRAP=${BOOTSTRAP:-localhost:9092}
PARTITIONS=${PARTITIONS:-4}
for topic in osprey.actions_input osprey.execution_results osprey.actions_rejected; do
  kafka-topics --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$topic" \
    --partitions "$PARTITIONS" --replication-factor 1 --config retention.ms=2592000000
done
# The reputation table's changelog is created by the Faust workers (compacted):
#   atmos-reputation-member-reputation-changelog
