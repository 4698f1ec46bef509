#!/bin/sh
# The `cluster` profile's one-shot job: join redis-1..3 into a 3-master Redis Cluster (no
# replicas: add `--cluster-replicas 1` and three more nodes for failover). Does nothing when the
# cluster already exists (its nodes keep nodes.conf in their volumes).
set -eu
NODES=${REDIS_CLUSTER_NODES:-"redis-1:6379 redis-2:6379 redis-3:6379"}
first=${NODES%% *}
for node in $NODES; do
  until redis-cli -h "${node%:*}" -p "${node#*:}" ping >/dev/null 2>&1; do sleep 0.5; done
done
if redis-cli -h "${first%:*}" -p "${first#*:}" cluster info | grep -q '^cluster_state:ok'; then
  echo "Redis Cluster already formed"
  exit 0
fi
# shellcheck disable=SC2086 # one argument per node
redis-cli --cluster create $NODES --cluster-replicas 0 --cluster-yes
until redis-cli -h "${first%:*}" -p "${first#*:}" cluster info | grep -q '^cluster_state:ok'; do
  sleep 0.5
done
echo "Redis Cluster formed"
