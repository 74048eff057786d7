package agent

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/zerotrace/zerotrace/correlate/redact"
)

func TestParseResourceAttributes(t *testing.T) {
	got := parseResourceAttributes(" a=b, c = d%2Ce ,bad,=x,k=v=w,key with space=1,e=%zz,long=" + strings.Repeat("é", 200))
	want := [][2]string{{"a", "b"}, {"c", "d,e"}, {"k", "v=w"}}
	if len(got) != 4 || fmt.Sprint(got[:3]) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q and a bounded long value", got, want)
	}
	if long := got[3][1]; len(long) > maxResourceValue || !strings.HasPrefix(long, "éé") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("long value not cut on a character boundary within %d bytes: %d bytes", maxResourceValue, len(long))
	}
	many := strings.Repeat("k=v,", 100)
	if n := len(parseResourceAttributes(many)); n != maxResourceAttrs {
		t.Errorf("%d attributes kept, want at most %d", n, maxResourceAttrs)
	}
}

// startWithEnv runs a process that waits, with env added to the test's,
// and returns its PID.
func startWithEnv(t *testing.T, env ...string) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// TestResolveIdentity reads real processes' environments: the precedence
// of a config rule, OTEL_SERVICE_NAME, the service.name of
// OTEL_RESOURCE_ATTRIBUTES, the flag and the executable; the resource
// attributes a process may and may not set; redaction of their values;
// and service.instance.id.
func TestResolveIdentity(t *testing.T) {
	red, err := redact.New(redact.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	withEnv := startWithEnv(t, "OTEL_SERVICE_NAME=orders",
		"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,service.name=ignored,password=hunter2,process.pid=1,host.name=fake")
	attrsOnly := startWithEnv(t, "OTEL_RESOURCE_ATTRIBUTES=service.name=billing,team=payments")
	bare := startWithEnv(t)
	rule := []ServiceRule{{Name: "checkout", Exe: "sl??p", Attributes: map[string]string{"deployment.environment.name": "staging"}}}
	other := []ServiceRule{{Name: "nope", Exe: "/usr/*/nginx"}, {Name: "nope-too", Exe: "/opt/*/sleep"}, {Name: "nope-either", PID: 1}}

	attrs := func(id identity) map[string]string {
		m := map[string]string{}
		for _, kv := range id.attrs {
			m[string(kv.Key)] = kv.Value.Emit()
		}
		return m
	}
	for _, c := range []struct {
		name        string
		pid         int
		flag        string
		rules       []ServiceRule
		want, from  string
		wantAttrs   map[string]string
		absentAttrs []string
	}{
		{"env", withEnv, "flagged", other, "orders", NameFromEnv,
			map[string]string{"deployment.environment.name": "prod"}, []string{"service.name", "process.pid", "host.name"}},
		{"rule over env", withEnv, "flagged", rule, "checkout", NameFromConfig,
			map[string]string{"deployment.environment.name": "staging"}, nil},
		{"resource attributes", attrsOnly, "flagged", nil, "billing", NameFromEnv, map[string]string{"team": "payments"}, nil},
		{"flag", bare, "flagged", other, "flagged", NameFromFlag, nil, nil},
		{"executable", bare, "", nil, "sleep", NameFromExecutable, nil, nil},
	} {
		id := resolveIdentity(c.pid, sleep, c.flag, c.rules, red)
		if id.name != c.want || id.source != c.from {
			t.Errorf("%s: %q from %s, want %q from %s", c.name, id.name, id.source, c.want, c.from)
		}
		got := attrs(id)
		for k, v := range c.wantAttrs {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", c.name, k, got[k], v, got)
			}
		}
		for _, k := range c.absentAttrs {
			if _, ok := got[k]; ok {
				t.Errorf("%s: the process set %s itself (%v)", c.name, k, got)
			}
		}
		if strings.Contains(fmt.Sprint(got), "hunter2") {
			t.Errorf("%s: a password left unredacted: %v", c.name, got)
		}
		uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
		if !uuid.MatchString(got["service.instance.id"]) {
			t.Errorf("%s: service.instance.id %q is not a version 5 UUID", c.name, got["service.instance.id"])
		}
	}
	if instanceID(bare) != instanceID(bare) || instanceID(bare) == instanceID(withEnv) {
		t.Error("service.instance.id is not stable for a process, or the same for two")
	}
}
