package wait

import (
	"sync"
	"testing"
)

func TestTriggerDeliversOnceToTheRightWaiter(t *testing.T) {
	r := New()
	a, b := r.Register(1), r.Register(65) // same shard
	if r.Register(1) != nil {
		t.Fatal("duplicate Register returned a channel")
	}
	r.Trigger(65, "b")
	r.Trigger(1, "a")
	r.Trigger(1, "again") // no waiter any more: dropped
	if got := <-a; got != "a" {
		t.Fatalf("waiter 1 got %v", got)
	}
	if got := <-b; got != "b" {
		t.Fatalf("waiter 65 got %v", got)
	}
	select {
	case x := <-a:
		t.Fatalf("second delivery %v", x)
	default:
	}
	if r.IsRegistered(1) {
		t.Fatal("id still registered after Trigger")
	}
}

func TestCancel(t *testing.T) {
	r := New()
	ch := r.Register(7)
	r.Cancel(7)
	r.Trigger(7, 1)
	select {
	case <-ch:
		t.Fatal("canceled waiter received a result")
	default:
	}
}

func TestConcurrent(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for i := uint64(0); i < 1000; i++ {
		ch := r.Register(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := <-ch; got != i {
				t.Errorf("waiter %d got %v", i, got)
			}
		}()
	}
	for i := uint64(0); i < 1000; i++ {
		go r.Trigger(i, i)
	}
	wg.Wait()
}
