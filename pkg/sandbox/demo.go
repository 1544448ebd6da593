package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// DefaultDemoNamespace is where ApplyDemo installs the demo shop.
const DefaultDemoNamespace = "shop"

// demoFieldManager owns the demo objects (server-side apply).
const demoFieldManager = "kaar-sandbox-demo"

// annotationDemoEvicted marks the cache Deployment once its pods have
// been evicted, so that ApplyDemo evicts only once.
const annotationDemoEvicted = "sandbox.kaar.dev/demo-evicted"

// DemoOptions configure ApplyDemo.
type DemoOptions struct {
	// Namespace of the demo (default DefaultDemoNamespace).
	Namespace string
	// Extras adds the workloads beyond the original case study: Pending,
	// Evicted and CreateContainerConfigError.
	Extras bool
}

// DemoWorkload is one workload of the demo and what its pods show.
type DemoWorkload struct {
	Kind string // Deployment, StatefulSet or Job
	Name string
	// Issue is the failure kaar should detect ("" for a healthy
	// workload): CrashLoopBackOff, OOMKilled, ImagePullBackOff, Pending,
	// Evicted or CreateContainerConfigError.
	Issue string
	// Status is the STATUS column `kubectl get pods` shows for the failing
	// pods (see PodStatus), or for the pods of a healthy workload.
	Status string
	// Extra is true for the workloads installed only with DemoOptions.Extras.
	Extra bool
	// RolledOut is true for the case-study Deployments, rolled from a good
	// revision to a bad one: their rollout history holds both.
	RolledOut bool
	// Fix says what heals it.
	Fix string
	// Log is a line of the failing pods' container log (AnnotationLog)
	// that explains the failure ("" when the log says nothing useful).
	Log string
}

// Container logs of the demo's apps (AnnotationLog).
const (
	paymentsGoodLog = "payments-api 3.2.0 starting\nloading configuration from /etc/payments/config.yaml\nlistening on :8080"
	// DemoPaymentsCrashLine is the line of payments-api's revision-2 log
	// that explains its crash.
	DemoPaymentsCrashLine = "Error: open /etc/payments/settings.yaml: no such file or directory"
	paymentsBadLog        = "payments-api 3.2.0 starting\nloading configuration from /etc/payments/settings.yaml\n" + DemoPaymentsCrashLine
	// The OOM killer leaves no line: the log stops while the model loads.
	recommenderLog = "recommender 0.9.4 starting\nloading model ranking-v7 (180Mi) into memory"
)

// DemoBroken lists the broken workloads of the demo.
var DemoBroken = []DemoWorkload{
	{Kind: "Deployment", Name: "payments-api", Issue: "CrashLoopBackOff", Status: "CrashLoopBackOff", RolledOut: true,
		Fix: "roll back to revision 1 (revision 2 changed CONFIG_PATH and crashes with exit code 1)", Log: DemoPaymentsCrashLine},
	{Kind: "Deployment", Name: "recommender", Issue: "OOMKilled", Status: "CrashLoopBackOff", RolledOut: true,
		Fix: "raise the memory limit to at least 200Mi (revision 2 lowered it from 512Mi to 64Mi), or roll back"},
	{Kind: "Deployment", Name: "frontend", Issue: "ImagePullBackOff", Status: "ImagePullBackOff", RolledOut: true,
		Fix: "set the image back to nginx:1.27, or roll back"},
	{Kind: "Deployment", Name: "analytics", Issue: "Pending", Status: "Pending", Extra: true,
		Fix: "request less CPU than a node has (requests 64 CPUs; nodes have 16)"},
	{Kind: "Deployment", Name: "cache", Issue: "Evicted", Status: "Error", Extra: true,
		Fix: "delete the evicted pods (the ReplicaSet has already replaced them)"},
	{Kind: "Deployment", Name: "notifier", Issue: "CreateContainerConfigError", Status: "CreateContainerConfigError", Extra: true,
		Fix: "reference the existing ConfigMap notifier-config instead of missing-notifier-config"},
}

// DemoHealthy lists the healthy workloads of the demo.
var DemoHealthy = []DemoWorkload{
	{Kind: "Deployment", Name: "catalog", Status: "Running"},
	{Kind: "Deployment", Name: "checkout", Status: "Running"},
	{Kind: "StatefulSet", Name: "db", Status: "Running"},
	{Kind: "Job", Name: "db-migrate", Status: "Completed"},
}

// Shows reports whether pod shows the workload's failure (or, for a
// healthy workload, its normal state).
func (w DemoWorkload) Shows(pod *corev1.Pod) bool {
	if PodStatus(pod) != w.Status {
		return false
	}
	switch w.Issue {
	case "CrashLoopBackOff", "OOMKilled":
		want := "Error"
		if w.Issue == "OOMKilled" {
			want = "OOMKilled"
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if t := cs.LastTerminationState.Terminated; t != nil && t.Reason == want {
				return true
			}
		}
		return false
	case "Pending":
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return true
			}
		}
		return false
	case "Evicted":
		return pod.Status.Phase == corev1.PodFailed && pod.Status.Reason == "Evicted"
	case "":
		return pod.Status.Phase == corev1.PodSucceeded || conditionTrue(pod, corev1.PodReady)
	}
	return true
}

// demo is one ApplyDemo run.
type demo struct {
	cs       kubernetes.Interface
	ns       string
	progress io.Writer
}

// ApplyDemo installs the demo shop in opts.Namespace and waits until every
// workload shows its expected state (DemoBroken, DemoHealthy). The three
// case-study Deployments are first rolled out with a good revision, then
// with the bad change, so their rollout history has a rollback target, as
// on a real cluster. ApplyDemo is idempotent: it converges to the demo
// state (re-breaking a workload that was fixed).
func ApplyDemo(ctx context.Context, cs kubernetes.Interface, opts DemoOptions, progress io.Writer) error {
	if opts.Namespace == "" {
		opts.Namespace = DefaultDemoNamespace
	}
	if progress == nil {
		progress = io.Discard
	}
	d := &demo{cs: cs, ns: opts.Namespace, progress: progress}
	if err := d.run(ctx, opts.Extras); err != nil {
		return fmt.Errorf("apply demo in %s: %w", opts.Namespace, err)
	}
	return nil
}

func (d *demo) run(ctx context.Context, extras bool) error {
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: d.ns, Labels: map[string]string{"app.kubernetes.io/part-of": "kaar-demo"}}}
	if err := d.apply(ctx, ns); err != nil {
		return err
	}
	fmt.Fprintf(d.progress, "installing the demo shop in namespace %s\n", d.ns)
	// Healthy workloads, and the good revision of the case study.
	objs := []object{
		demoConfigMap(d.ns, "payments-config"), demoConfigMap(d.ns, "notifier-config"),
		demoService(d.ns, "catalog", false), demoService(d.ns, "checkout", false), demoService(d.ns, "frontend", false),
		demoService(d.ns, "payments-api", false), demoService(d.ns, "db", true),
		catalogDeployment(d.ns), checkoutDeployment(d.ns), dbStatefulSet(d.ns), migrateJob(d.ns),
	}
	if extras {
		objs = append(objs, cacheDeployment(d.ns))
	}
	for _, o := range objs {
		if err := d.apply(ctx, o); err != nil {
			return err
		}
	}
	if err := d.rollOutCaseStudy(ctx); err != nil {
		return err
	}
	if extras {
		if err := d.apply(ctx, analyticsDeployment(d.ns)); err != nil {
			return err
		}
		if err := d.apply(ctx, notifierDeployment(d.ns)); err != nil {
			return err
		}
		if err := d.evictCache(ctx); err != nil {
			return err
		}
	}
	for _, w := range append(append([]DemoWorkload{}, DemoHealthy...), DemoBroken...) {
		if w.Extra && !extras {
			continue
		}
		if err := d.waitShows(ctx, w); err != nil {
			return err
		}
	}
	return nil
}

// rollOutCaseStudy rolls out the bad revision of each case-study
// Deployment; a new one gets its good revision first, so that its rollout
// history has a rollback target, as on a real cluster.
func (d *demo) rollOutCaseStudy(ctx context.Context) error {
	caseStudy := []struct{ good, bad *appsv1.Deployment }{
		{paymentsDeployment(d.ns, false), paymentsDeployment(d.ns, true)},
		{recommenderDeployment(d.ns, false), recommenderDeployment(d.ns, true)},
		{frontendDeployment(d.ns, false), frontendDeployment(d.ns, true)},
	}
	// An existing case-study Deployment already has its history.
	var created []string
	for _, c := range caseStudy {
		_, err := d.cs.AppsV1().Deployments(d.ns).Get(ctx, c.good.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if err := d.apply(ctx, c.good); err != nil {
				return err
			}
			created = append(created, c.good.Name)
		} else if err != nil {
			return err
		}
	}
	for _, name := range created {
		if err := d.waitDeploymentAvailable(ctx, name); err != nil {
			return err
		}
	}
	fmt.Fprintln(d.progress, "rolling out the bad revisions of payments-api, recommender and frontend")
	for _, c := range caseStudy {
		if err := d.apply(ctx, c.bad); err != nil {
			return err
		}
	}
	return nil
}

// object is anything the demo applies.
type object interface {
	GetName() string
}

// apply server-side-applies obj (a typed object with TypeMeta set).
func (d *demo) apply(ctx context.Context, obj object) error {
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: demoFieldManager, Force: new(true)}
	name := obj.GetName()
	switch obj.(type) {
	case *corev1.Namespace:
		_, err = d.cs.CoreV1().Namespaces().Patch(ctx, name, types.ApplyPatchType, data, opts)
	case *corev1.ConfigMap:
		_, err = d.cs.CoreV1().ConfigMaps(d.ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
	case *corev1.Service:
		_, err = d.cs.CoreV1().Services(d.ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
	case *appsv1.Deployment:
		_, err = d.cs.AppsV1().Deployments(d.ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
	case *appsv1.StatefulSet:
		_, err = d.cs.AppsV1().StatefulSets(d.ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
	case *batchv1.Job:
		_, err = d.cs.BatchV1().Jobs(d.ns).Patch(ctx, name, types.ApplyPatchType, data, opts)
	default:
		return fmt.Errorf("apply %s: unsupported type %T", name, obj)
	}
	if err != nil {
		return fmt.Errorf("apply %T %s: %w", obj, name, err)
	}
	return nil
}

// poll runs check every 250ms until it returns true, an error, or the
// context ends.
func poll(ctx context.Context, timeout time.Duration, what string, check func(context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		ok, why, err := check(ctx)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		last = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%s)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

const demoTimeout = 3 * time.Minute

func (d *demo) waitDeploymentAvailable(ctx context.Context, name string) error {
	return poll(ctx, demoTimeout, "wait for deployment "+name, func(ctx context.Context) (bool, string, error) {
		dep, err := d.cs.AppsV1().Deployments(d.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return DeploymentAvailable(dep), fmt.Sprintf("%d/%d updated and available", dep.Status.AvailableReplicas, *dep.Spec.Replicas), nil
	})
}

// DeploymentAvailable reports whether dep's latest revision is fully
// rolled out and available (what `kubectl rollout status` waits for).
func DeploymentAvailable(dep *appsv1.Deployment) bool {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	s := dep.Status
	return s.ObservedGeneration >= dep.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// waitShows waits until w's pods show its expected state.
func (d *demo) waitShows(ctx context.Context, w DemoWorkload) error {
	return poll(ctx, demoTimeout, fmt.Sprintf("wait for %s %s to show %s", w.Kind, w.Name, w.Status), func(ctx context.Context) (bool, string, error) {
		pods, err := d.cs.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + w.Name})
		if err != nil {
			return false, "", err
		}
		seen := []string{}
		showing := 0
		for i := range pods.Items {
			seen = append(seen, pods.Items[i].Name+":"+PodStatus(&pods.Items[i]))
			if w.Shows(&pods.Items[i]) {
				showing++
			}
		}
		want := 1
		switch w.Issue {
		case "":
			want = demoReplicas[w.Name] // every pod of a healthy workload
		case "Evicted":
			want = demoReplicas[w.Name] // both cache pods evicted ...
			running := 0
			for i := range pods.Items {
				if PodStatus(&pods.Items[i]) == "Running" && conditionTrue(&pods.Items[i], corev1.PodReady) {
					running++
				}
			}
			if running < demoReplicas[w.Name] { // ... and replaced
				return false, fmt.Sprintf("pods %v", seen), nil
			}
		}
		return showing >= want, fmt.Sprintf("pods %v", seen), nil
	})
}

// evictCache evicts the pods of the cache Deployment once, as node memory
// pressure would: the annotation goes on the pods, not the template.
func (d *demo) evictCache(ctx context.Context) error {
	if err := d.waitDeploymentAvailable(ctx, "cache"); err != nil {
		return err
	}
	dep, err := d.cs.AppsV1().Deployments(d.ns).Get(ctx, "cache", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if dep.Annotations[annotationDemoEvicted] == "true" {
		return nil
	}
	pods, err := d.cs.CoreV1().Pods(d.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=cache"})
	if err != nil {
		return err
	}
	fmt.Fprintln(d.progress, "evicting the cache pods (node memory pressure)")
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"memory"}}}`, AnnotationEvict)
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		if _, err := d.cs.CoreV1().Pods(d.ns).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("evict pod %s: %w", p.Name, err)
		}
	}
	mark := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"true"}}}`, annotationDemoEvicted)
	_, err = d.cs.AppsV1().Deployments(d.ns).Patch(ctx, "cache", types.MergePatchType, mark, metav1.PatchOptions{})
	return err
}

// demoReplicas are the replica counts of the demo workloads.
var demoReplicas = map[string]int{
	"catalog": 3, "checkout": 2, "db": 1, "db-migrate": 1,
	"payments-api": 3, "recommender": 1, "frontend": 2,
	"analytics": 1, "cache": 2, "notifier": 1,
}

func labels(name string) map[string]string {
	return map[string]string{"app": name, "app.kubernetes.io/part-of": "kaar-demo"}
}

func demoConfigMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(name)},
		Data:       map[string]string{"config.yaml": "log_level: info\n", "webhook-url": "https://hooks.example.com/notify"},
	}
}

func demoService(ns, name string, headless bool) *corev1.Service {
	s := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(name)},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if headless {
		s.Spec.ClusterIP = corev1.ClusterIPNone
		s.Spec.Ports = []corev1.ServicePort{{Name: "postgres", Port: 5432, TargetPort: intstr.FromInt32(5432)}}
	}
	return s
}

func resources(cpu, memRequest, memLimit string) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memRequest)}}
	if memLimit != "" {
		r.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memLimit)}
	}
	return r
}

func deployment(ns, name string, replicas int32, annotations map[string]string, c corev1.Container) *appsv1.Deployment {
	c.Name = "app"
	if len(c.Ports) == 0 {
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(name)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(name), Annotations: annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
			},
		},
	}
}

func catalogDeployment(ns string) *appsv1.Deployment {
	return deployment(ns, "catalog", 3, nil, corev1.Container{Image: "ghcr.io/kaar-dev/demo/catalog:2.0.1",
		Resources: resources("100m", "128Mi", "256Mi")})
}

func checkoutDeployment(ns string) *appsv1.Deployment {
	return deployment(ns, "checkout", 2, nil, corev1.Container{Image: "ghcr.io/kaar-dev/demo/checkout:1.8.0",
		Resources: resources("100m", "128Mi", "256Mi")})
}

// paymentsDeployment: revision 2 (bad) points CONFIG_PATH at a file that
// does not exist and the app exits with code 1.
func paymentsDeployment(ns string, bad bool) *appsv1.Deployment {
	configPath := "/etc/payments/config.yaml"
	ann := map[string]string{AnnotationLog: paymentsGoodLog}
	if bad {
		configPath = "/etc/payments/settings.yaml"
		ann = map[string]string{AnnotationCrashExitCode: "1", AnnotationLog: paymentsBadLog}
	}
	d := deployment(ns, "payments-api", 3, ann, corev1.Container{Image: "ghcr.io/kaar-dev/demo/payments-api:3.2.0",
		Env:       []corev1.EnvVar{{Name: "CONFIG_PATH", Value: configPath}},
		Resources: resources("200m", "256Mi", "512Mi")})
	// A surge of 50% rolls two new pods at once, so the bad revision has
	// several crashing pods: one incident, not one per pod.
	surge := intstr.FromString("50%")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge}}
	return d
}

// recommenderDeployment: the app uses 200Mi; revision 2 (bad) lowers the
// limit from 512Mi to 64Mi.
func recommenderDeployment(ns string, bad bool) *appsv1.Deployment {
	limit := "512Mi"
	if bad {
		limit = "64Mi"
	}
	return deployment(ns, "recommender", 1, map[string]string{AnnotationMemoryUsage: "200Mi", AnnotationLog: recommenderLog},
		corev1.Container{Image: "ghcr.io/kaar-dev/demo/recommender:0.9.4", Resources: resources("250m", "64Mi", limit)})
}

// frontendDeployment: revision 2 (bad) uses an image tag that does not exist.
func frontendDeployment(ns string, bad bool) *appsv1.Deployment {
	img := "nginx:1.27"
	if bad {
		img = "nginx:1.27-" + NonexistentTag
	}
	return deployment(ns, "frontend", 2, nil, corev1.Container{Image: img, Resources: resources("100m", "64Mi", "128Mi")})
}

// analyticsDeployment requests more CPU than any node has: Pending.
func analyticsDeployment(ns string) *appsv1.Deployment {
	return deployment(ns, "analytics", 1, nil, corev1.Container{Image: "ghcr.io/kaar-dev/demo/analytics:5.1.0",
		Resources: resources("64", "1Gi", "2Gi")})
}

func cacheDeployment(ns string) *appsv1.Deployment {
	return deployment(ns, "cache", 2, map[string]string{AnnotationMemoryUsage: "310Mi"}, corev1.Container{Image: "redis:7.4",
		Ports: []corev1.ContainerPort{{Name: "redis", ContainerPort: 6379}}, Resources: resources("100m", "0", "")})
}

// notifierDeployment reads a ConfigMap that does not exist:
// CreateContainerConfigError.
func notifierDeployment(ns string) *appsv1.Deployment {
	return deployment(ns, "notifier", 1, nil, corev1.Container{Image: "ghcr.io/kaar-dev/demo/notifier:1.1.0",
		Env: []corev1.EnvVar{{Name: "WEBHOOK_URL", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: MissingRefPrefix + "notifier-config"}, Key: "webhook-url"}}}},
		Resources: resources("50m", "64Mi", "128Mi")})
}

func dbStatefulSet(ns string) *appsv1.StatefulSet {
	replicas := int32(1)
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns, Labels: labels("db")},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "db",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels("db")},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "postgres:16",
					Ports:     []corev1.ContainerPort{{Name: "postgres", ContainerPort: 5432}},
					Resources: resources("250m", "256Mi", "1Gi")}}},
			},
		},
	}
}

func migrateJob(ns string) *batchv1.Job {
	backoff := int32(0)
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: "db-migrate", Namespace: ns, Labels: labels("db-migrate")},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels("db-migrate")},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app",
					Image: "ghcr.io/kaar-dev/demo/migrate:3.2.0", Args: []string{"migrate", "up"},
					Resources: resources("100m", "64Mi", "128Mi")}}},
			},
		},
	}
}
