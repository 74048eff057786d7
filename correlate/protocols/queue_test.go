package protocols

import "testing"

func TestQueue(t *testing.T) {
	var q Queue[int]
	for i := range 3 {
		q.Push(i)
	}
	if q.Len() != 3 || q.At(0) != 0 || q.At(2) != 2 {
		t.Fatalf("queue %v", q.items)
	}
	if v := q.Pop(); v != 0 || q.Len() != 2 || q.At(0) != 1 {
		t.Fatalf("popped %d, left %v", v, q.items)
	}
	// Asking and being answered in turn reuses the memory.
	before := cap(q.items)
	for i := range 100 {
		q.Push(i)
		q.Pop()
	}
	if cap(q.items) != before || q.Len() != 2 {
		t.Errorf("capacity %d (was %d), length %d", cap(q.items), before, q.Len())
	}
}
