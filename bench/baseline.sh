#!/bin/sh
# The baseline the benchmarks compare against (issue 6): the shell-and-kubectl
# CronJob that stuck-hr-recovery replaces, written from its description.
#
#   1. one `kubectl get hr -A -o jsonpath=...` lists every HelmRelease;
#   2. per stuck HelmRelease (Ready=Unknown for at least the threshold, not
#      suspended): `kubectl get secret -l owner=helm,name=<release>` finds the
#      latest Helm revision, `kubectl get secret <latest> -o jsonpath=...` reads
#      its status label;
#   3. per candidate (latest revision `deployed`): `kubectl patch` suspend true,
#      `sleep 5`, `kubectl patch` suspend false.
#
# Everything runs serially, one kubectl process per step, as the original did.
# It has no guardrail and cannot tell the two stuck modes apart: every stuck
# HelmRelease whose latest revision is deployed gets the toggle. Like the
# original, it ignores the 53-character release-name hashing. Needs GNU date
# (`date -d`) for the age of Ready.
#
# Environment:
#   KUBECTL                  kubectl to run (default: the fixed 1.33 sibling of
#                            the machine's dispatcher `kubectl`)
#   KUBECONFIG               cluster to talk to (kubectl's own rules)
#   STUCK_THRESHOLD_SECONDS  how long Ready must be Unknown (default 300)
#
# Prints one line per candidate (`<ns>/<name> toggled|failed`) and a summary
# line; exits 1 when any kubectl step failed.
set -eu

KUBECTL=${KUBECTL:-"$(dirname "$(readlink -f "$(command -v kubectl)")")/kubectl.1.33"}
THRESHOLD=${STUCK_THRESHOLD_SECONDS:-300}

# A fresh discovery cache per run, as in a new CronJob pod.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

k() {
    "$KUBECTL" --cache-dir "$work/cache" "$@"
}

now=$(date -u +%s)

# namespace|name|releaseName|targetNamespace|status.storageNamespace|
# spec.storageNamespace|suspend|Ready status|Ready lastTransitionTime
k get hr -A -o jsonpath='{range .items[*]}{.metadata.namespace}{"|"}{.metadata.name}{"|"}{.spec.releaseName}{"|"}{.spec.targetNamespace}{"|"}{.status.storageNamespace}{"|"}{.spec.storageNamespace}{"|"}{.spec.suspend}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\n"}{end}' \
    >"$work/hr"

scanned=0 stuck=0 candidates=0 toggled=0 failed=0
while IFS='|' read -r ns name rel target sns_status sns_spec suspend ready since; do
    scanned=$((scanned + 1))
    [ "$ready" = Unknown ] || continue
    [ "$suspend" != true ] || continue
    [ -n "$since" ] || continue
    since_s=$(date -u -d "$since" +%s 2>/dev/null) || continue
    [ $((now - since_s)) -ge "$THRESHOLD" ] || continue
    stuck=$((stuck + 1))

    if [ -z "$rel" ]; then
        if [ -n "$target" ]; then rel="$target-$name"; else rel="$name"; fi
    fi
    sns=${sns_status:-${sns_spec:-$ns}}

    if ! k get secret -n "$sns" -l "owner=helm,name=$rel" \
        -o jsonpath='{range .items[*]}{.metadata.labels.version}{"|"}{.metadata.name}{"\n"}{end}' \
        >"$work/revisions"; then
        echo "$ns/$name failed listing release secrets" >&2
        failed=$((failed + 1))
        continue
    fi
    latest=$(sort -t'|' -k1,1n "$work/revisions" | tail -n 1 | cut -d'|' -f2)
    [ -n "$latest" ] || continue
    if ! status=$(k get secret -n "$sns" "$latest" -o jsonpath='{.metadata.labels.status}'); then
        echo "$ns/$name failed reading $latest" >&2
        failed=$((failed + 1))
        continue
    fi
    [ "$status" = deployed ] || continue
    candidates=$((candidates + 1))

    if k patch hr -n "$ns" "$name" --type=merge -p '{"spec":{"suspend":true}}' >/dev/null &&
        sleep 5 &&
        k patch hr -n "$ns" "$name" --type=merge -p '{"spec":{"suspend":false}}' >/dev/null; then
        toggled=$((toggled + 1))
        echo "$ns/$name toggled"
    else
        failed=$((failed + 1))
        echo "$ns/$name failed"
    fi
done <"$work/hr"

echo "scanned=$scanned stuck=$stuck candidates=$candidates toggled=$toggled failed=$failed"
[ "$failed" -eq 0 ]
