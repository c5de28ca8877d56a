package autoscale

// ring is a growable double-ended queue. The window and the scale-down
// delay both append at the back and expire at the front every tick; a ring
// does that without reallocating once it has reached the window's size.
type ring[T any] struct {
	buf  []T
	head int
	n    int
}

func (r *ring[T]) len() int { return r.n }

// at returns the i-th element from the front.
func (r *ring[T]) at(i int) *T { return &r.buf[(r.head+i)%len(r.buf)] }

func (r *ring[T]) front() *T { return r.at(0) }

func (r *ring[T]) back() *T { return r.at(r.n - 1) }

func (r *ring[T]) push(v T) {
	if r.n == len(r.buf) {
		grown := make([]T, max(8, 2*len(r.buf)))
		for i := range r.n {
			grown[i] = *r.at(i)
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = v
	r.n++
}

func (r *ring[T]) popFront() {
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}

func (r *ring[T]) popBack() { r.n-- }

func (r *ring[T]) clear() { r.head, r.n = 0, 0 }
