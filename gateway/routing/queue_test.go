package routing

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// slots is a pool of n interchangeable slots behind a queue, as a pool of
// members at container concurrency is.
type slots struct {
	mu   sync.Mutex
	free int
	q    *Queue
}

func (s *slots) acquire() (Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.free == 0 {
		return Lease{}, false
	}
	s.free--
	return Lease{Route: &Route{}}, true
}

func (s *slots) release() {
	s.mu.Lock()
	s.free++
	s.mu.Unlock()
	s.q.Signal()
}

func TestQueue_FIFO(t *testing.T) {
	s := &slots{q: &Queue{}}
	const n = 20
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.q.Wait(context.Background(), 0, s.acquire); err != nil {
				t.Error(err)
				return
			}
			order <- i
			s.release()
		})
		// Each waiter is queued before the next arrives.
		for s.q.Held() != int64(i+1) {
			time.Sleep(time.Millisecond)
		}
	}
	s.release() // one slot for the whole line
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("served %d before %d: not first in, first out", got, want)
		}
		want++
	}
	if s.q.Held() != 0 {
		t.Fatalf("%d still held", s.q.Held())
	}
}

func TestQueue_BoundedAndCancellable(t *testing.T) {
	s := &slots{q: &Queue{}}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := s.q.Wait(ctx, 2, s.acquire); errs <- err }()
	}
	for s.q.Held() != 2 {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.q.Wait(context.Background(), 2, s.acquire); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third waiter: %v, want ErrQueueFull at once", err)
	}
	cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled waiter: %v", err)
		}
	}
	if s.q.Held() != 0 {
		t.Fatalf("%d held after every waiter gave up", s.q.Held())
	}
}

func TestQueue_HeadLeavingPassesTheSignalOn(t *testing.T) {
	s := &slots{q: &Queue{}}
	headCtx, leaveHead := context.WithCancel(context.Background())
	headDone := make(chan error, 1)
	go func() { _, err := s.q.Wait(headCtx, 0, s.acquire); headDone <- err }()
	for s.q.Held() != 1 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { _, err := s.q.Wait(context.Background(), 0, s.acquire); second <- err }()
	for s.q.Held() != 2 {
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock()
	s.free = 1 // a slot frees up without a signal reaching the second
	s.mu.Unlock()
	leaveHead()
	if err := <-headDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the head that left: %v", err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second waiter was never woken after the head left")
	}
}
