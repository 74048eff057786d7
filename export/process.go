package export

import "github.com/zerotrace/zerotrace/correlate/model"

// processCache holds a sink's state per traced process (an encoded
// resource, say) and forgets the state of processes that are gone, so that
// short-lived processes (a pre-forking server's children) leave nothing
// behind. Not safe for concurrent use.
type processCache[V any] struct {
	m map[*model.Process]V
	// since counts the spans seen since the last sweep.
	since int
}

// get returns p's state.
func (c *processCache[V]) get(p *model.Process) (V, bool) {
	v, ok := c.m[p]
	return v, ok
}

// put keeps v as p's state, unless p is gone already: a late span of an
// exited process is served without leaving an entry.
func (c *processCache[V]) put(p *model.Process, v V) {
	if p.Gone() {
		return
	}
	if c.m == nil {
		c.m = make(map[*model.Process]V)
	}
	c.m[p] = v
}

// sweep drops the entries of gone processes, handing each to drop when it
// is not nil. It runs once as many spans as there are entries went by
// (given as spans), so that its cost per span stays constant however many
// processes are traced.
func (c *processCache[V]) sweep(spans int, drop func(V)) {
	c.since += spans
	if c.since < len(c.m) {
		return
	}
	c.since = 0
	for p, v := range c.m {
		if p.Gone() {
			delete(c.m, p)
			if drop != nil {
				drop(v)
			}
		}
	}
}

// len is the number of processes with state.
func (c *processCache[V]) len() int { return len(c.m) }
