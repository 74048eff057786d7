package protocols

// Queue holds, oldest first, the exchanges of a connection that await their
// answer. Answers come in order and queues are short (the feeder bounds
// them), so taking the oldest moves the rest down rather than letting the
// memory behind it go: a connection that asks and is answered in turn
// allocates once.
type Queue[T any] struct {
	items []T
}

// Len is how many wait.
func (q *Queue[T]) Len() int { return len(q.items) }

// Push adds the newest.
func (q *Queue[T]) Push(v T) { q.items = append(q.items, v) }

// At is the i-th oldest; At(0) is the oldest.
func (q *Queue[T]) At(i int) T { return q.items[i] }

// Pop takes the oldest. The queue must not be empty.
func (q *Queue[T]) Pop() T {
	v := q.items[0]
	n := copy(q.items, q.items[1:])
	var zero T
	q.items[n] = zero
	q.items = q.items[:n]
	return v
}
