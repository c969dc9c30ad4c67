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

func TestValueKeptUntilTriggerOrCancel(t *testing.T) {
	r := New()
	r.RegisterValue(3, "three")
	r.Register(4)
	if v, ok := r.Value(3); !ok || v != "three" {
		t.Fatalf("Value(3) = %v, %v", v, ok)
	}
	if v, ok := r.Value(4); !ok || v != nil {
		t.Fatalf("Value(4) = %v, %v; want nil, true", v, ok)
	}
	if _, ok := r.Value(5); ok {
		t.Fatal("Value of an unregistered id")
	}
	r.Trigger(3, nil)
	r.Cancel(4)
	if _, ok := r.Value(3); ok {
		t.Fatal("value kept after Trigger")
	}
	if _, ok := r.Value(4); ok {
		t.Fatal("value kept after Cancel")
	}
}
