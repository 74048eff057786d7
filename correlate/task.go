package correlate

// TaskEvent is a process traced from the kernel forking a child, which is
// traced from then on, or exiting.
type TaskEvent struct {
	PID    uint32 // the child, or the process that exited
	Parent uint32 // for a fork
	Exit   bool
}

// ProcessID implements Event.
func (e *TaskEvent) ProcessID() uint32 { return e.PID }
