package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerotrace/zerotrace/tests/internal/testenv"
)

// secretQuery carries values for the built-in detectors (an email address,
// a token parameter) and for the ones the test config adds (a sensitive
// parameter name and a pattern). page=2 must survive every redaction.
const secretQuery = "customer=alice&note=EMP-123456&contact=bob@example.com&token=s3cr3t&page=2"

var secrets = []string{"alice", "EMP-123456", "bob@example.com", "s3cr3t"}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zerotrace.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tracedQuery attaches with the given config, sends one request with
// secretQuery and returns what the JSON output says its url.query was.
func tracedQuery(t *testing.T, config string) (query string, a *agent) {
	t.Helper()
	zt := testenv.BuildZerotrace(t)
	cmd, addr := testenv.StartSampleApp(t, testenv.BuildSampleApp(t))
	a = startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", "json", "--config", config)
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/hello?" + secretQuery)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a.stop()
	spans := a.jsonSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1:\n%s", len(spans), a.Stdout())
	}
	q, _ := spans[0].Attributes["url.query"].(string)
	return q, a
}

// TestRedactionConfig: the --config file adds sensitive parameter names and
// patterns to the built-in detectors; redaction can be turned off, loudly;
// a misspelt key is refused before anything is attached.
func TestRedactionConfig(t *testing.T) {
	testenv.RequireRoot(t)

	t.Run("extended", func(t *testing.T) {
		q, a := tracedQuery(t, writeConfig(t, `
redaction:
  sensitive_params: [customer]
  patterns:
    - name: employee
      regex: 'EMP-\d{6}'
`))
		for _, s := range secrets {
			if strings.Contains(a.Stdout(), s) {
				t.Errorf("%q left the agent: url.query %q", s, q)
			}
		}
		if !strings.Contains(q, "page=2") || !strings.Contains(q, "customer=REDACTED") || !strings.Contains(q, "token=REDACTED") {
			t.Errorf("url.query %q: want customer and token redacted, page=2 kept", q)
		}
	})

	t.Run("off", func(t *testing.T) {
		q, a := tracedQuery(t, writeConfig(t, "redaction:\n  enabled: false\n"))
		if q != secretQuery {
			t.Errorf("with redaction off, url.query = %q, want %q", q, secretQuery)
		}
		if !strings.Contains(a.Stderr(), "WARNING: redaction is OFF") {
			t.Errorf("turning redaction off was not announced:\n%s", a.Stderr())
		}
	})

	t.Run("defaults", func(t *testing.T) {
		// Without the additions, the built-in detectors still apply.
		q, _ := tracedQuery(t, writeConfig(t, "redaction: {}\n"))
		if strings.Contains(q, "bob@example.com") || strings.Contains(q, "s3cr3t") || !strings.Contains(q, "customer=alice") {
			t.Errorf("url.query %q: want the email and token redacted by default, customer kept", q)
		}
	})

	for name, tc := range map[string]struct{ yaml, want string }{
		"misspelt key":     {"redaction:\n  disabel: [phone]\n", "disabel"},
		"unknown detector": {"redaction:\n  disable: [phonee]\n", "phonee"},
		"bad pattern":      {"redaction:\n  patterns: [{name: x, regex: '('}]\n", "regex"},
		"top-level key":    {"redaction: {}\nexporter: jaeger\n", "exporter"},
	} {
		t.Run(name, func(t *testing.T) {
			zt := testenv.BuildZerotrace(t)
			app, _ := testenv.StartSampleApp(t, testenv.BuildSampleApp(t))
			code, _, stderr := runAgent(t, exec.Command(zt, "attach", "--pid", fmt.Sprint(app.Process.Pid), "--config", writeConfig(t, tc.yaml)))
			if code == 0 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "attached to") {
				t.Errorf("exit %d, stderr %q: want a failure naming %q before attaching", code, stderr, tc.want)
			}
		})
	}
}

// sensitiveValues holds one value per built-in detector, each valid for its
// detector (checksums included), as a service would see them in requests.
var sensitiveValues = map[string]string{
	"china mobile":        "13812345678",
	"china resident id":   "11010519491231002X",
	"email":               "li.na@example.cn",
	"card (Luhn)":         "4539578763621486",
	"bearer token":        "Bearer abcDEF0123456789ghiJKL",
	"api key":             "sk-proj0123456789abcdefABCDEF",
	"jwt":                 "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
	"password in url":     "postgres://app:Hunter2pass@db.internal/shop",
	"sensitive parameter": "password=correct-horse-battery",
}

// TestRedactionOfEveryDetectorInOutputs sends each kind of sensitive value
// in a request's query and path, and checks that neither the text output
// nor the JSON output shows it, in any encoding the request carried it in.
func TestRedactionOfEveryDetectorInOutputs(t *testing.T) {
	testenv.RequireRoot(t)
	zt := testenv.BuildZerotrace(t)
	app := testenv.BuildSampleApp(t)
	for _, output := range []string{"text", "json"} {
		t.Run(output, func(t *testing.T) {
			cmd, addr := testenv.StartSampleApp(t, app)
			a := startAgent(t, zt, nil, "attach", "--pid", fmt.Sprint(cmd.Process.Pid), "--output", output)
			c := &http.Client{Timeout: testenv.Timeout(t, 10*time.Second)}
			for _, v := range sensitiveValues {
				query := "note=" + url.QueryEscape(v)
				if k, val, ok := strings.Cut(v, "="); ok && !strings.Contains(v, "://") {
					query = k + "=" + url.QueryEscape(val) // a parameter of its own
				}
				for _, u := range []string{
					"http://" + addr + "/hello?" + query,
					"http://" + addr + "/users/" + url.PathEscape(v),
				} {
					resp, err := c.Get(u)
					if err != nil {
						t.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			a.stop()
			out := a.Stdout()
			if n := strings.Count(out, "\n"); n != 2*len(sensitiveValues) {
				t.Fatalf("%d %s lines for %d requests:\n%s", n, output, 2*len(sensitiveValues), out)
			}
			for kind, v := range sensitiveValues {
				secret := v
				if _, val, ok := strings.Cut(v, "="); ok && !strings.Contains(v, "://") {
					secret = val
				}
				if i := strings.LastIndex(secret, " "); i >= 0 {
					secret = secret[i+1:] // the token after "Bearer"
				}
				if kind == "password in url" {
					secret = "Hunter2pass"
				}
				for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
					if strings.Contains(out, form) {
						t.Errorf("%s: %q appears in the %s output", kind, form, output)
					}
				}
			}
		})
	}
}
