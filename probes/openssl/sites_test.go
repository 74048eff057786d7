package openssl

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestFindSites finds the sites in this machine's libssl (through a Python
// process that imports ssl) and in Node's binary, when they are installed.
func TestFindSites(t *testing.T) {
	for _, c := range []struct {
		name string
		argv []string
		kind Kind
	}{
		{"python", []string{"python3", "-c", "import ssl, time; print('x', flush=True); time.sleep(30)"}, Internal},
		{"node", []string{"node", "-e", "console.log('x'); setTimeout(() => {}, 30000)"}, Exported},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.argv[0]); err != nil {
				t.Skipf("%s is not installed", c.argv[0])
			}
			cmd := exec.Command(c.argv[0], c.argv[1:]...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			b := make([]byte, 2)
			if _, err := out.Read(b); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			s, err := FindSites(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", s)
			if s.Kind != c.kind || s.Read == 0 || s.Write == 0 || !strings.HasPrefix(s.ReadInst, "push") || !strings.HasPrefix(s.WriteInst, "push") {
				t.Errorf("sites %+v", s)
			}
		})
	}
}

// TestSitesRefused: an executable without OpenSSL is not one (ErrNoTLS),
// and a library that is not libssl's layout gets a reason.
func TestSitesRefused(t *testing.T) {
	if _, err := exportedSites("/bin/true", "/bin/true"); !errors.Is(err, ErrNoTLS) {
		t.Errorf("/bin/true: %v, want ErrNoTLS", err)
	}
	const crypto = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"
	if _, err := os.Stat(crypto); err != nil {
		t.Skipf("%s: %v", crypto, err)
	}
	_, err := libsslSites(crypto, crypto)
	if err == nil || errors.Is(err, ErrNoTLS) || !strings.Contains(err.Error(), "SSL_read_ex") {
		t.Errorf("libcrypto as a libssl: %v", err)
	}
}
