package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kaar-dev/kaar/pkg/events"
	"github.com/kaar-dev/kaar/services/watcher"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// podObserver is the bench's own watch on the pods: it records when each
// incident's first pod was seen failing (the status write, as a watch
// sees it), independently of the watcher.
type podObserver struct {
	cluster string
	opts    watcher.ClassifyOptions

	mu        sync.Mutex
	failingAt map[string]time.Time // incident id -> first failing pod seen
	podFail   map[string]time.Time // pod key -> first seen failing
	running   map[string]bool      // pod key -> Running and Ready
	inf       cache.SharedIndexInformer
}

func newPodObserver(cs kubernetes.Interface, ns, cluster string, opts watcher.ClassifyOptions) (*podObserver, error) {
	o := &podObserver{cluster: cluster, opts: opts, failingAt: map[string]time.Time{}, podFail: map[string]time.Time{}, running: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	o.inf = f.Core().V1().Pods().Informer()
	_, err := o.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { o.saw(obj) },
		UpdateFunc: func(_, obj any) { o.saw(obj) },
		DeleteFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok {
				o.mu.Lock()
				delete(o.running, p.Namespace+"/"+p.Name)
				o.mu.Unlock()
			}
		},
	})
	return o, err
}

func (o *podObserver) run(ctx context.Context) error {
	go o.inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), o.inf.HasSynced) {
		return fmt.Errorf("bench pod watch did not sync: %w", ctx.Err())
	}
	return nil
}

func (o *podObserver) saw(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	key := p.Namespace + "/" + p.Name
	issues := watcher.Classify(p, nil, now, o.opts)
	ready := p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && podReady(p)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.running[key] = ready && len(issues) == 0
	if len(issues) == 0 {
		return
	}
	if _, seen := o.podFail[key]; !seen {
		o.podFail[key] = now
	}
	kind, name := ownerOf(p)
	for _, iss := range issues {
		id := events.IncidentID(o.cluster, p.Namespace, kind, name, iss.Container, iss.Type)
		if _, seen := o.failingAt[id]; !seen {
			o.failingAt[id] = now
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ownerOf is the incident owner of a bench pod: its Deployment (named by
// the app label, the bench creates no other controllers) or itself.
func ownerOf(p *corev1.Pod) (kind, name string) {
	if metav1.GetControllerOfNoCopy(p) == nil {
		return "Pod", p.Name
	}
	return "Deployment", p.Labels["app"]
}

func (o *podObserver) runningCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.running {
		if r {
			n++
		}
	}
	return n
}

func (o *podObserver) firstFailing(id string) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.failingAt[id]
	return t, ok
}

// failingPods returns when each of keys was first seen failing.
func (o *podObserver) failingPods(keys []string) []time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []time.Time
	for _, k := range keys {
		if t, ok := o.podFail[k]; ok {
			out = append(out, t)
		}
	}
	return out
}

// collector records every announcement on the ISSUES stream of the
// cluster, with its arrival time.
type collector struct {
	mu  sync.Mutex
	got []arrival
	cc  jetstream.ConsumeContext
}

type arrival struct {
	at    time.Time
	event events.IncidentEvent
}

func newCollector(ctx context.Context, nc *nats.Conn, cluster string) (*collector, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	filter, err := events.IssueFilter(cluster)
	if err != nil {
		return nil, err
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamIssues, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	c := &collector{}
	c.cc, err = cons.Consume(func(m jetstream.Msg) {
		at := time.Now()
		env, err := events.Decode(m.Data())
		if err != nil {
			return
		}
		ev, err := events.DecodeData[events.IncidentEvent](env)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.got = append(c.got, arrival{at: at, event: ev})
		c.mu.Unlock()
	})
	return c, err
}

func (c *collector) since(i int) []arrival {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]arrival(nil), c.got[min(i, len(c.got)):]...)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}
