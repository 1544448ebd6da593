#!/bin/sh
# The compose demo job: give the other containers a kubeconfig that reaches
# k3s by its service name, then roll three Deployments of namespace "shop"
# from a good revision to a broken one, as in the original case study, so
# that `kubectl rollout undo` (and kaar's rollback) has a revision to go to.
set -eu
while [ ! -s /output/kubeconfig.yaml ]; do sleep 1; done
sed 's#https://127.0.0.1:6443#https://k3s:6443#' /output/kubeconfig.yaml > /output/kubeconfig-internal.yaml.tmp
chmod 644 /output/kubeconfig-internal.yaml.tmp
mv /output/kubeconfig-internal.yaml.tmp /output/kubeconfig-internal.yaml
export KUBECONFIG=/output/kubeconfig.yaml
kubectl apply -f /demo/good.yaml
kubectl -n shop rollout status deployment/payments-api deployment/recommender deployment/frontend deployment/catalog --timeout=300s
kubectl apply -f /demo/broken.yaml
echo "demo installed: kubectl get pods -n shop"
