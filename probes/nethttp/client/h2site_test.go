package client

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/zerotrace/zerotrace/probes/gobin"
	"github.com/zerotrace/zerotrace/probes/offsets"
)

// TestH2Sites: in a program that makes HTTPS calls with net/http, built by
// the local Go (1.26) and by go1.27.4 (HTTP/2 moved to
// net/http/internal/http2), the HTTP/2 part finds what it needs: one of
// H2HeadersSymbols with an emulated entry, crypto/tls.(*Conn).Read's copy
// site, and every field it reads (under the name the version has), from
// DWARF, equal to what the offsets table gives a binary without DWARF.
// It builds with go1.27.4 only when the go command has that toolchain (the
// offsets generator downloads it); -short skips that build.
func TestH2Sites(t *testing.T) {
	reads := map[string][]offsets.Field{
		"request URL": {H2ClientRequestURL, offsets.RequestURL},
		"stream ID":   {H2ClientStreamID, h2ClientStreamID},
		"stream conn": {H2ClientStreamConn, h2ClientStreamConn},
		"conn tconn":  {H2ClientConnTConn, h2ClientConnTConn},
	}
	for _, tc := range []struct{ toolchain, symbol string }{
		{"local", H2HeadersSymbols[0]},
		{"go1.27.4", H2HeadersSymbols[1]},
	} {
		t.Run(tc.toolchain, func(t *testing.T) {
			if tc.toolchain != "local" && testing.Short() {
				t.Skip("-short: no build with another toolchain")
			}
			bin := filepath.Join(t.TempDir(), "gotlsloop")
			cmd := exec.Command("go", "build", "-o", bin, "./tests/testdata/gotlsloop")
			_, file, _, _ := runtime.Caller(0)
			cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "..")
			cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+tc.toolchain, "GOFLAGS=")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build with %s: %v\n%s", tc.toolchain, err, out)
			}
			b, err := gobin.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			f, err := b.Func(tc.symbol)
			if err != nil {
				t.Fatal(err)
			}
			off, err := b.EntryOffset(f)
			if err != nil {
				t.Fatal(err)
			}
			if inst, err := b.ProbedInstruction(off); err != nil || !inst.Emulated {
				t.Errorf("%s's entry %+v is not emulated (%v)", tc.symbol, inst, err)
			}
			rf, err := b.Func(TLSReadSymbol)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := copySite(b, rf); err != nil {
				t.Error(err)
			}
			version := b.GoVersion
			for what, names := range reads {
				found := false
				for _, fld := range names {
					if err := b.LoadStructs(fld.Struct); err != nil {
						continue
					}
					got, err := b.FieldOffset(fld.Struct, fld.Name)
					if err != nil {
						continue
					}
					found = true
					if want, err := offsets.Lookup(version, fld); err != nil || want != got {
						t.Errorf("%s: %s at %d in DWARF, %d (%v) in the table for %s", what, fld, got, want, err, version)
					}
					break
				}
				if !found {
					t.Errorf("%s: none of %v in DWARF", what, names)
				}
			}
		})
	}
}
