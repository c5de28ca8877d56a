package routing

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Queue holds one pool's requests that wait for a member: at zero for one
// to start (activation), at max scale for a slot to free up (capacity). It
// is FIFO and bounded: a request arriving at a full queue is refused at
// once instead of holding memory without limit (knative/serving#13583).
//
// Only the head of the queue tries to acquire. It is woken when a slot of
// the pool is released or a new table gives the pool members, and passes
// the wake-up on when it leaves, so no signal is lost and nobody jumps the
// line.
type Queue struct {
	mu      sync.Mutex
	waiters list.List // of *waiter, oldest first
	// held mirrors waiters.Len() for lock-free reads on the request path
	// and for the demand the gateway reports.
	held atomic.Int64
}

type waiter struct {
	ready chan struct{}
}

// ErrQueueFull means the pool's queue is at its bound.
var ErrQueueFull = errors.New("routing: the pool's queue is full")

// Held is how many requests wait now.
func (q *Queue) Held() int64 { return q.held.Load() }

// Wait queues the caller behind everyone already waiting and returns the
// lease acquire gives it once it is at the head, or ctx's error when ctx
// ends first (a client that gives up leaves at once), or ErrQueueFull when
// limit requests already wait.
func (q *Queue) Wait(ctx context.Context, limit int, acquire func() (Lease, bool)) (Lease, error) {
	w := &waiter{ready: make(chan struct{}, 1)}
	q.mu.Lock()
	if limit > 0 && q.waiters.Len() >= limit {
		q.mu.Unlock()
		return Lease{}, ErrQueueFull
	}
	e := q.waiters.PushBack(w)
	q.held.Add(1)
	if q.waiters.Front() == e {
		w.ready <- struct{}{} // nobody ahead: try at once
	}
	q.mu.Unlock()
	defer q.leave(e)
	for {
		select {
		case <-ctx.Done():
			return Lease{}, ctx.Err()
		case <-w.ready:
		}
		if !q.head(e) {
			continue
		}
		if l, ok := acquire(); ok {
			return l, nil
		}
	}
}

func (q *Queue) head(e *list.Element) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiters.Front() == e
}

// leave removes e and, when it was the head, wakes the next one: the slot
// it waited for may have been one of several, or it gave up on one.
func (q *Queue) leave(e *list.Element) {
	q.mu.Lock()
	wasHead := q.waiters.Front() == e
	q.waiters.Remove(e)
	q.held.Add(-1)
	if wasHead {
		q.signalLocked()
	}
	q.mu.Unlock()
}

// Signal wakes the head of the queue, if anyone waits: a slot was
// released or members appeared.
func (q *Queue) Signal() {
	if q.held.Load() == 0 {
		return
	}
	q.mu.Lock()
	q.signalLocked()
	q.mu.Unlock()
}

func (q *Queue) signalLocked() {
	if f := q.waiters.Front(); f != nil {
		select {
		case f.Value.(*waiter).ready <- struct{}{}:
		default: // already signalled
		}
	}
}
