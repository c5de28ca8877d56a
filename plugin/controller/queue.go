package controller

import (
	"context"
	"sync"
	"time"
)

// queue is a work queue keyed by pool id, in the manner of client-go's: a
// key is queued at most once, is handed to one worker at a time, and a key
// added while it is being worked on is queued again when the worker is done.
// AddAfter keeps only the earliest pending timer per key.
type queue struct {
	mu      sync.Mutex
	order   []string
	queued  map[string]bool
	active  map[string]bool
	dirty   map[string]bool
	timers  map[string]*time.Timer
	due     map[string]time.Time
	wake    chan struct{}
	stopped bool
}

func newQueue() *queue {
	return &queue{
		queued: map[string]bool{},
		active: map[string]bool{},
		dirty:  map[string]bool{},
		timers: map[string]*time.Timer{},
		due:    map[string]time.Time{},
		wake:   make(chan struct{}, 1),
	}
}

// Add queues key now.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *queue) addLocked(key string) {
	switch {
	case q.stopped:
	case q.active[key]:
		q.dirty[key] = true
	case !q.queued[key]:
		q.queued[key] = true
		q.order = append(q.order, key)
		q.signal()
	}
}

// AddAfter queues key after d, unless it is already due sooner.
func (q *queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	at := time.Now().Add(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	if due, ok := q.due[key]; ok && !at.Before(due) {
		return
	}
	if t := q.timers[key]; t != nil {
		t.Stop()
	}
	q.due[key] = at
	q.timers[key] = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.due[key].Equal(at) {
			delete(q.due, key)
			delete(q.timers, key)
		}
		q.addLocked(key)
	})
}

// Get blocks until a key is ready or ctx is done; the caller must call
// Done with the key.
func (q *queue) Get(ctx context.Context) (string, bool) {
	for {
		q.mu.Lock()
		if len(q.order) > 0 {
			key := q.order[0]
			q.order = q.order[1:]
			delete(q.queued, key)
			q.active[key] = true
			if len(q.order) > 0 {
				q.signal() // more work: wake another worker
			}
			q.mu.Unlock()
			return key, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-q.wake:
		}
	}
}

// Done marks key finished, queueing it again if it was added meanwhile.
func (q *queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.active, key)
	if q.dirty[key] {
		delete(q.dirty, key)
		q.addLocked(key)
	}
}

// Stop cancels every timer; later adds are ignored.
func (q *queue) Stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stopped = true
	for _, t := range q.timers {
		t.Stop()
	}
}

// Len is the number of keys waiting, for tests and metrics.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
