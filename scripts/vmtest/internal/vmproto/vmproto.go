// Package vmproto is the contract between the vmtest runner on the host and
// the init program that runs the payload (inside a guest, or on the host).
//
// The runner hands the init program a Config as JSON. The init program hands
// back one results archive (a gzip-compressed tar holding a Meta record, the
// payload's console output and every file the payload left in its result
// directory), framed as a base64 "stream" with begin/end markers, a length and
// a SHA-256. The framing exists because inside a VM the archive travels over
// an emulated serial port: it is plain text, survives stray carriage returns,
// and a truncated or corrupted transfer is detected instead of being taken for
// a short but valid result.
package vmproto

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Console markers printed by the init program on its console. The runner
// timestamps them to measure boot and payload time, and falls back on
// MarkerExit when the results archive does not arrive.
const (
	MarkerInit         = "@@ZTVM-INIT@@"
	MarkerPayloadStart = "@@ZTVM-PAYLOAD-START@@"
	MarkerExit         = "@@ZTVM-EXIT@@"
)

// Stream markers framing the results archive.
const (
	streamBegin = "@@ZTVM-RESULTS-BEGIN@@"
	streamEnd   = "@@ZTVM-RESULTS-END@@"
)

// Names inside the results archive. The payload's own files live under
// ResultsPrefix so that they can never collide with the runner's records.
const (
	MetaName      = "vmtest/meta.json"
	OutputName    = "vmtest/output.log"
	ResultsPrefix = "results/"
)

// Config tells the init program what to do. It is written by the runner and
// read by the init program at start.
type Config struct {
	// KernelName is the matrix entry name ("6.1", "host"), exported to the
	// payload as KERNEL_NAME.
	KernelName string `json:"kernel_name"`
	// HostMode is set when the init program runs on the host kernel instead
	// of as PID 1 of a guest: no base file systems to mount, no modules to
	// load, no power-off.
	HostMode bool `json:"host_mode"`
	// PrivateMounts tells a host-mode init that the runner gave it a mount
	// namespace of its own, so mounting bpffs, tracefs and debugfs there is
	// invisible to the rest of the host. (Comparing namespaces with PID 1's
	// is not possible in sandboxes that hide PID 1.)
	PrivateMounts bool `json:"private_mounts,omitempty"`
	// PayloadDir holds the payload; its "run" entry is executed with this
	// directory as working directory.
	PayloadDir string `json:"payload_dir"`
	// ResultDir is exported as RESULT_DIR; everything in it is returned.
	ResultDir string `json:"result_dir"`
	// ResultsPath is where the framed results archive is written: a serial
	// device inside a guest, a plain file on the host.
	ResultsPath string `json:"results_path"`
	// Modules are kernel module files to load, dependencies first.
	Modules []string `json:"modules,omitempty"`
	// PathPrefix is prepended to PATH for the payload.
	PathPrefix []string `json:"path_prefix"`
	// BasePath is the rest of PATH.
	BasePath string `json:"base_path"`
	// TimeoutSeconds bounds the payload's run time. It is shorter than the
	// runner's own deadline so that a slow payload still reports its partial
	// results instead of being lost with the whole VM.
	TimeoutSeconds float64 `json:"timeout_seconds"`
	// Env holds extra environment variables for the payload.
	Env map[string]string `json:"env,omitempty"`
}

// Meta is the init program's own record of the run, stored in the archive.
type Meta struct {
	// KernelRelease is uname -r as seen by the payload.
	KernelRelease string `json:"kernel_release"`
	// UptimeAtInit is the guest's /proc/uptime when init started: the
	// kernel's own view of its boot time.
	UptimeAtInit float64 `json:"uptime_at_init_seconds"`
	// ExitStatus is the payload's exit code, 128+signal if it was killed, or
	// -1 if it could not be started.
	ExitStatus int `json:"exit_status"`
	// Signal names the signal that ended the payload, if any.
	Signal string `json:"signal,omitempty"`
	// TimedOut reports that the payload hit TimeoutSeconds and was killed.
	TimedOut bool `json:"timed_out"`
	// PayloadSeconds is the payload's run time.
	PayloadSeconds float64 `json:"payload_seconds"`
	// Modules reports, per requested module file, "loaded", "already
	// loaded" or the error.
	Modules map[string]string `json:"modules,omitempty"`
	// Notes are non-fatal problems (a mount that failed, a file that could
	// not be archived).
	Notes []string `json:"notes,omitempty"`
}

// Archive collects files into the results archive.
type Archive struct {
	buf bytes.Buffer
	gz  *gzip.Writer
	tw  *tar.Writer
}

// NewArchive starts an empty archive. BestSpeed keeps the guest's emulated
// CPU time low while still shrinking verifier logs several times, which
// matters more: the serial transfer is the slow part.
func NewArchive() *Archive {
	a := &Archive{}
	a.gz, _ = gzip.NewWriterLevel(&a.buf, gzip.BestSpeed)
	a.tw = tar.NewWriter(a.gz)
	return a
}

// AddBytes stores data under name.
func (a *Archive) AddBytes(name string, data []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archiving %s: %w", name, err)
	}
	_, err := a.tw.Write(data)
	return err
}

// AddTree stores every regular file below dir under prefix, keeping relative
// paths. Symlinks and special files are skipped (and reported) because the
// host must not be made to follow a link planted by the payload.
func (a *Archive) AddTree(dir, prefix string) (skipped []string, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, werr error) error {
		if werr != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", p, werr))
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if !d.Type().IsRegular() {
			skipped = append(skipped, rel+": not a regular file")
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", rel, err))
			return nil
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: prefix + filepath.ToSlash(rel), Mode: int64(fi.Mode().Perm()), Size: fi.Size(), Typeflag: tar.TypeReg}
		if err := a.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archiving %s: %w", rel, err)
		}
		// CopyN guards against a file still growing while it is archived,
		// which would otherwise make the tar stream invalid.
		if _, err := io.CopyN(a.tw, f, fi.Size()); err != nil {
			return fmt.Errorf("archiving %s: %w", rel, err)
		}
		return nil
	})
	return skipped, err
}

// Bytes finishes the archive and returns it.
func (a *Archive) Bytes() ([]byte, error) {
	if err := a.tw.Close(); err != nil {
		return nil, err
	}
	if err := a.gz.Close(); err != nil {
		return nil, err
	}
	return a.buf.Bytes(), nil
}

// WriteStream frames data as base64 text between markers.
func WriteStream(w io.Writer, data []byte) error {
	sum := sha256.Sum256(data)
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, "\n%s %d %s\n", streamBegin, len(data), hex.EncodeToString(sum[:]))
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 0 {
		n := min(len(enc), 76)
		bw.WriteString(enc[:n])
		bw.WriteByte('\n')
		enc = enc[n:]
	}
	fmt.Fprintf(bw, "%s\n", streamEnd)
	return bw.Flush()
}

// ErrNoStream reports that no results stream began in the input.
var ErrNoStream = errors.New("no results stream found")

// ReadStream finds the last complete framed archive in r and verifies it.
// The last one wins because a payload could in principle print a stream of
// its own; the init program always writes its stream after the payload ended.
func ReadStream(r io.Reader) ([]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var (
		in        bool
		size      int
		sum       string
		b64       strings.Builder
		found     []byte
		lastErr   error = ErrNoStream
		sawBegins bool
	)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.HasPrefix(line, streamBegin):
			sawBegins = true
			f := strings.Fields(line)
			in = false
			if len(f) != 3 {
				lastErr = fmt.Errorf("malformed stream header %q", line)
				continue
			}
			n, err := strconv.Atoi(f[1])
			if err != nil {
				lastErr = fmt.Errorf("malformed stream header %q", line)
				continue
			}
			in, size, sum = true, n, f[2]
			b64.Reset()
		case in && line == streamEnd:
			in = false
			data, err := base64.StdEncoding.DecodeString(b64.String())
			if err != nil {
				lastErr = fmt.Errorf("decoding results stream: %w", err)
				continue
			}
			got := sha256.Sum256(data)
			if len(data) != size || hex.EncodeToString(got[:]) != sum {
				lastErr = fmt.Errorf("results stream corrupted: %d bytes (want %d), checksum mismatch", len(data), size)
				continue
			}
			found, lastErr = data, nil
		case in:
			b64.WriteString(line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading results stream: %w", err)
	}
	if found != nil {
		return found, nil
	}
	if in {
		return nil, errors.New("results stream truncated (no end marker)")
	}
	if !sawBegins {
		return nil, ErrNoStream
	}
	return nil, lastErr
}

// Unpacked is a decoded results archive.
type Unpacked struct {
	// Meta is the init program's record; nil if the archive had none.
	Meta *Meta
	// Output is the payload's console output.
	Output []byte
	// Files lists the payload's result files (relative to RESULT_DIR), in
	// archive order.
	Files []string
}

// Unpack extracts archive data: the payload's files go below dir, the runner's
// records are returned. Names that would escape dir are refused.
func Unpack(data []byte, dir string) (*Unpacked, error) {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("opening results archive: %w", err)
	}
	tr := tar.NewReader(gz)
	u := &Unpacked{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return u, fmt.Errorf("reading results archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		switch {
		case hdr.Name == MetaName:
			var m Meta
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				return u, fmt.Errorf("decoding %s: %w", MetaName, err)
			}
			u.Meta = &m
		case hdr.Name == OutputName:
			if u.Output, err = io.ReadAll(tr); err != nil {
				return u, err
			}
		case strings.HasPrefix(hdr.Name, ResultsPrefix):
			rel := path.Clean(strings.TrimPrefix(hdr.Name, ResultsPrefix))
			if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
				return u, fmt.Errorf("refusing result file name %q", hdr.Name)
			}
			dst := filepath.Join(dir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return u, err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return u, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return u, fmt.Errorf("writing %s: %w", dst, err)
			}
			u.Files = append(u.Files, rel)
		}
	}
	return u, nil
}
