package vmproto

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func buildArchive(t *testing.T, results map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range results {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := NewArchive()
	if err := a.AddBytes(OutputName, []byte("hello from the payload\n")); err != nil {
		t.Fatal(err)
	}
	skipped, err := a.AddTree(dir, ResultsPrefix)
	if err != nil || len(skipped) > 0 {
		t.Fatalf("AddTree: %v, skipped %v", err, skipped)
	}
	if err := a.AddBytes(MetaName, []byte(`{"kernel_release":"6.1.0-50-amd64","exit_status":3,"timed_out":true}`)); err != nil {
		t.Fatal(err)
	}
	data, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestStreamRoundTrip(t *testing.T) {
	data := buildArchive(t, map[string]string{
		"summary.json":      `{"ok":true}`,
		"logs/verifier.txt": strings.Repeat("R1=ctx() R10=fp0\n", 5000),
	})
	var buf bytes.Buffer
	// Console noise around the stream must not matter.
	buf.WriteString("[    1.234] random kernel message\n")
	if err := WriteStream(&buf, data); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("trailing noise without newline")
	// A serial line in cooked mode turns \n into \r\n: the reader copes.
	crlf := bytes.ReplaceAll(buf.Bytes(), []byte("\n"), []byte("\r\n"))

	got, err := ReadStream(bytes.NewReader(crlf))
	if err != nil {
		t.Fatalf("ReadStream: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("stream did not round-trip")
	}
	out := t.TempDir()
	u, err := Unpack(got, out)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	if u.Meta == nil || u.Meta.ExitStatus != 3 || !u.Meta.TimedOut || u.Meta.KernelRelease != "6.1.0-50-amd64" {
		t.Fatalf("meta = %+v", u.Meta)
	}
	if string(u.Output) != "hello from the payload\n" {
		t.Fatalf("output = %q", u.Output)
	}
	slices.Sort(u.Files)
	if want := []string{"logs/verifier.txt", "summary.json"}; !slices.Equal(u.Files, want) {
		t.Fatalf("files = %v, want %v", u.Files, want)
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil || string(b) != `{"ok":true}` {
		t.Fatalf("summary.json = %q, %v", b, err)
	}
}

func TestStreamDamage(t *testing.T) {
	data := buildArchive(t, map[string]string{"summary.json": `{}`})
	var buf bytes.Buffer
	if err := WriteStream(&buf, data); err != nil {
		t.Fatal(err)
	}
	full := buf.String()
	lines := strings.Split(full, "\n")

	t.Run("truncated", func(t *testing.T) {
		cut := strings.Join(lines[:len(lines)-3], "\n")
		if _, err := ReadStream(strings.NewReader(cut)); err == nil {
			t.Fatal("a truncated stream was accepted")
		}
	})
	t.Run("lost line", func(t *testing.T) {
		// A dropped line (a UART overrun) still decodes as base64 when it
		// is a multiple of 4 characters: only the checksum catches it.
		damaged := append(append([]string{}, lines[:3]...), lines[4:]...)
		if _, err := ReadStream(strings.NewReader(strings.Join(damaged, "\n"))); err == nil {
			t.Fatal("a stream with a lost line was accepted")
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		header := strings.Index(full, streamBegin)
		i := header + strings.Index(full[header:], "\n") + 10 // inside the first base64 line
		b := []byte(full)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := ReadStream(bytes.NewReader(b)); err == nil {
			t.Fatal("a corrupted stream was accepted")
		}
	})
	t.Run("absent", func(t *testing.T) {
		if _, err := ReadStream(strings.NewReader("only console noise\n")); !errors.Is(err, ErrNoStream) {
			t.Fatalf("err = %v, want ErrNoStream", err)
		}
	})
	t.Run("last complete stream wins", func(t *testing.T) {
		other := buildArchive(t, map[string]string{"summary.json": `{"second":true}`})
		var two bytes.Buffer
		two.WriteString(full)
		if err := WriteStream(&two, other); err != nil {
			t.Fatal(err)
		}
		got, err := ReadStream(&two)
		if err != nil || !bytes.Equal(got, other) {
			t.Fatalf("got %d bytes, err %v; want the second stream", len(got), err)
		}
	})
}

func TestUnpackRefusesEscapingNames(t *testing.T) {
	a := NewArchive()
	if err := a.AddBytes(ResultsPrefix+"../../etc/evil", []byte("x")); err != nil {
		t.Fatal(err)
	}
	data, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Unpack(data, filepath.Join(dir, "files")); err == nil {
		t.Fatal("a name escaping the results directory was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); err == nil {
		t.Fatal("file written outside the results directory")
	}
}

func TestAddTreeSkipsSymlinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "real.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	a := NewArchive()
	skipped, err := a.AddTree(dir, ResultsPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || !strings.HasPrefix(skipped[0], "link") {
		t.Fatalf("skipped = %v, want the symlink", skipped)
	}
}
