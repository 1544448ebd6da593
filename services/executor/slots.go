package executor

import (
	"context"
	"sync"
)

// slots is a counting semaphore per namespace: at most limit executions
// of one namespace at once (the blast radius of approving many plans at
// the same time).
type slots struct {
	limit int
	mu    sync.Mutex
	sem   map[string]chan struct{}
}

func newSlots(limit int) *slots {
	return &slots{limit: limit, sem: map[string]chan struct{}{}}
}

// acquire takes a slot of namespace ns, waiting for one when all are
// taken. It returns the release function (nil when ctx ended first) and
// whether it had to wait.
func (s *slots) acquire(ctx context.Context, ns string) (release func(), waited bool) {
	s.mu.Lock()
	ch, ok := s.sem[ns]
	if !ok {
		ch = make(chan struct{}, s.limit)
		s.sem[ns] = ch
	}
	s.mu.Unlock()
	release = func() { <-ch }
	select {
	case ch <- struct{}{}:
		return release, false
	default:
	}
	select {
	case ch <- struct{}{}:
		return release, true
	case <-ctx.Done():
		return nil, true
	}
}
