package probes

import (
	"os"
	"testing"
)

// Processes of one executable share one opened binary, closed with the
// last of them.
func TestTargetsShareTheirBinary(t *testing.T) {
	a, err := OpenTarget(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenTarget(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if a.Bin != b.Bin {
		t.Fatal("two targets of one executable opened it twice")
	}
	if n := a.Shared(); n != 2 {
		t.Errorf("Shared() = %d, want 2", n)
	}
	a.ReleaseTables()
	bin := b.Bin
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.Bin != nil {
		t.Error("a closed target still holds its binary")
	}
	if err := a.Close(); err != nil {
		t.Errorf("closing twice: %v", err)
	}
	// The other target still reads it.
	if _, err := b.Bin.Func("runtime.main"); err != nil {
		t.Errorf("the binary was closed with the first target: %v", err)
	}
	if n := b.Shared(); n != 1 {
		t.Errorf("Shared() = %d after one closed, want 1", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := bin.Func("runtime.goexit"); err == nil {
		t.Error("the binary is still open after its last target closed")
	}
	c, err := OpenTarget(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Bin == bin {
		t.Error("a closed binary was handed out again")
	}
}
