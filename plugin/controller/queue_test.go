package controller

import (
	"context"
	"testing"
	"time"
)

func TestQueue_DedupesAndRequeuesKeysAddedWhileActive(t *testing.T) {
	q := newQueue()
	ctx := context.Background()
	q.Add("a")
	q.Add("b")
	q.Add("a")
	if q.Len() != 2 {
		t.Fatalf("len %d, want 2", q.Len())
	}
	k, _ := q.Get(ctx)
	if k != "a" {
		t.Fatalf("got %q", k)
	}
	q.Add("a") // while active: not handed to a second worker
	if k, _ := q.Get(ctx); k != "b" {
		t.Fatalf("got %q, want b", k)
	}
	if q.Len() != 0 {
		t.Fatal("a queued while still active")
	}
	q.Done("a")
	if k, _ := q.Get(ctx); k != "a" {
		t.Fatalf("got %q, want a again after Done", k)
	}
}

func TestQueue_AddAfterKeepsTheEarliestTimer(t *testing.T) {
	q := newQueue()
	defer q.Stop()
	q.AddAfter("a", time.Hour)
	q.AddAfter("a", 20*time.Millisecond)
	q.AddAfter("a", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if k, ok := q.Get(ctx); !ok || k != "a" {
		t.Fatalf("got %q, %v", k, ok)
	}
}

func TestQueue_GetReturnsWhenContextEnds(t *testing.T) {
	q := newQueue()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := q.Get(ctx); ok {
		t.Fatal("Get returned a key from an empty queue")
	}
}
