#!/bin/sh
# Make sure the namespace selfheal uses exists (selfheal's worker registers its search attributes).
set -eu
NAMESPACE=${DEFAULT_NAMESPACE:-default}
ADDRESS=${TEMPORAL_ADDRESS:-temporal:7233}
temporal operator cluster health --address "$ADDRESS"
temporal operator namespace describe -n "$NAMESPACE" --address "$ADDRESS" \
  || temporal operator namespace create -n "$NAMESPACE" --retention 30d --address "$ADDRESS"
