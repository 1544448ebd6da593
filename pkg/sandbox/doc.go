// Package sandbox runs a real Kubernetes control plane on one machine,
// without Docker, for kaar's tests, demos and local development.
//
// The control plane is built from published Go modules (etcd 3.6,
// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
// 1.37) and uses kwok as the kubelets: nodes are Kubernetes objects that
// kwok keeps Ready, and pods are moved through their lifecycle by kwok
// "stages". The sandbox ships its own stages that turn well-known pod
// specs into the failures kaar detects (CrashLoopBackOff, OOMKilled,
// ImagePullBackOff, CreateContainerConfigError, Evicted); the failure is a
// function of the pod spec, so a remediation that changes the spec
// really heals the workload, verified by the real controllers. Resource
// usage is a function of the spec too: kwok simulates it from pod
// annotations and metrics-server 0.8 serves it as the real metrics.k8s.io
// API (kubectl top, HorizontalPodAutoscalers).
//
// EnsureBinaries builds the binaries once and caches them; Up starts a
// cluster (idempotently) and Down stops it; Status reports on a state
// directory. ForTest and RunTests share one cluster per test binary, and
// ApplyDemo installs the demo shop with its broken workloads. See
// README.md for the conventions and cmd/kaar-sandbox for the command.
package sandbox
