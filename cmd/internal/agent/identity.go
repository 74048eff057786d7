package agent

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/zerotrace/zerotrace/correlate/redact"
)

// ServiceRule names the processes it matches (configuration, services:):
// every field set must match. Exe and Cgroup are path globs (path.Match):
// Exe against the executable's name, or its whole path when it has a
// slash; Cgroup against the process's cgroup (v2) path.
type ServiceRule struct {
	Name       string
	PID        int
	Exe        string
	Cgroup     string
	Attributes map[string]string
}

// Where a service.name came from, as the attach line and the map say.
const (
	NameFromConfig     = "config"
	NameFromEnv        = "env"
	NameFromFlag       = "flag"
	NameFromExecutable = "executable"
)

// identity is what a traced process is called: its service.name, where
// that came from, and its further resource attributes.
type identity struct {
	name   string
	source string
	attrs  []attribute.KeyValue
}

// Bounds on what a process's environment may add to its resource: the
// environment is the traced program's, not ours to trust.
const (
	maxResourceAttrs = 32
	maxResourceKey   = 128
	maxResourceValue = 256
	maxEnviron       = 1 << 20
)

// resolveIdentity names process pid (executable exe): the first rule that
// matches, else its own OTEL_SERVICE_NAME, else the service.name of its
// OTEL_RESOURCE_ATTRIBUTES, else flagName (--service-name), else the
// executable's name. Its OTEL_RESOURCE_ATTRIBUTES and the matching rule's
// attributes (the rule's win) join the resource, redacted; service.name
// and the attributes the agent sets itself are not taken from them.
// service.instance.id is derived from the host, the PID and the process's
// start time: the same for the life of a process, another for the next
// process of the same service.
func resolveIdentity(pid int, exe, flagName string, rules []ServiceRule, red *redact.Redactor) identity {
	env := processEnv(pid)
	fromEnv := parseResourceAttributes(env["OTEL_RESOURCE_ATTRIBUTES"])
	var id identity
	extra := map[string]string{}
	var order []string
	add := func(k, v string) {
		if _, ok := extra[k]; !ok {
			order = append(order, k)
		}
		extra[k] = v
	}
	for _, kv := range fromEnv {
		add(kv[0], kv[1])
	}
	if r := matchRule(pid, exe, rules); r != nil {
		id.name, id.source = r.Name, NameFromConfig
		for k, v := range r.Attributes {
			if validResourceKey(k) {
				add(k, boundValue(v))
			}
		}
	}
	if id.name == "" {
		if n := boundValue(strings.TrimSpace(env["OTEL_SERVICE_NAME"])); n != "" {
			id.name, id.source = n, NameFromEnv
		} else if n := extra["service.name"]; n != "" {
			id.name, id.source = n, NameFromEnv
		}
	}
	if id.name == "" && flagName != "" {
		id.name, id.source = flagName, NameFromFlag
	}
	if id.name == "" {
		id.name, id.source = path.Base(exe), NameFromExecutable
	}
	for _, k := range order {
		if ownResourceKey(k) {
			continue
		}
		v := extra[k]
		if red != nil {
			// As a key=value pair, so that a sensitive key's value is
			// masked whatever it looks like.
			if _, rv, ok := strings.Cut(red.String(k+"="+v), "="); ok {
				v = rv
			}
		}
		id.attrs = append(id.attrs, attribute.String(k, v))
	}
	id.attrs = append(id.attrs, attribute.String("service.instance.id", instanceID(pid)))
	return id
}

// ownResourceKey tells the keys the agent sets itself (model.NewProcess),
// which a process's environment does not override.
func ownResourceKey(k string) bool {
	return k == "service.name" || k == "service.instance.id" || k == "host.name" ||
		strings.HasPrefix(k, "process.") || strings.HasPrefix(k, "telemetry.sdk.")
}

// matchRule returns the first rule every set field of which matches.
func matchRule(pid int, exe string, rules []ServiceRule) *ServiceRule {
	var cgroup string
	for i := range rules {
		r := &rules[i]
		if r.PID != 0 && r.PID != pid {
			continue
		}
		if r.Exe != "" {
			against := path.Base(exe)
			if strings.Contains(r.Exe, "/") {
				against = exe
			}
			if ok, _ := path.Match(r.Exe, against); !ok {
				continue
			}
		}
		if r.Cgroup != "" {
			if cgroup == "" {
				cgroup = processCgroup(pid)
			}
			if ok, _ := path.Match(r.Cgroup, cgroup); !ok {
				continue
			}
		}
		return r
	}
	return nil
}

// processEnv reads the environment of pid (empty when it cannot).
func processEnv(pid int) map[string]string {
	env := map[string]string{}
	f, err := os.Open(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return env
	}
	defer f.Close()
	b := make([]byte, maxEnviron)
	n, _ := f.Read(b)
	for _, kv := range bytes.Split(b[:n], []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			continue
		}
		switch string(k) {
		case "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES":
			env[string(k)] = string(v)
		}
	}
	return env
}

// processCgroup is pid's cgroup v2 path ("" when it cannot be read).
func processCgroup(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return ""
}

// parseResourceAttributes reads OTEL_RESOURCE_ATTRIBUTES as the
// OpenTelemetry SDKs do: key=value pairs separated by commas, values
// percent-encoded. A pair that does not parse, with an invalid key, or
// beyond the bounds is dropped; the rest stay, in order.
func parseResourceAttributes(s string) [][2]string {
	var out [][2]string
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		v, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil || !validResourceKey(k) {
			continue
		}
		out = append(out, [2]string{k, boundValue(v)})
		if len(out) == maxResourceAttrs {
			break
		}
	}
	return out
}

func validResourceKey(k string) bool {
	if k == "" || len(k) > maxResourceKey {
		return false
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// boundValue cuts v to maxResourceValue bytes, on a character boundary,
// and drops control characters.
func boundValue(v string) string {
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
	if len(v) <= maxResourceValue {
		return v
	}
	cut := maxResourceValue
	for cut > 0 && !utf8Start(v[cut]) {
		cut--
	}
	return v[:cut]
}

func utf8Start(b byte) bool { return b&0xc0 != 0x80 }

// instanceID is a version 5 (name-based, SHA-1) UUID of the host name, the
// PID and the process's start time, in the form service.instance.id's
// conventions suggest for a generated one.
func instanceID(pid int) string {
	host, _ := os.Hostname()
	h := sha1.New()
	// The namespace: a fixed UUID of the project's own.
	h.Write([]byte{0x5a, 0x54, 0x2e, 0x69, 0x6e, 0x73, 0x74, 0x61, 0x6e, 0x63, 0x65, 0x2e, 0x69, 0x64, 0x00, 0x01})
	h.Write([]byte(host + "\x00" + strconv.Itoa(pid) + "\x00" + processStart(pid)))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// processStart is field 22 of /proc/PID/stat, the process's start time in
// clock ticks since boot ("" when it cannot be read).
func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) may hold spaces: count from its end.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}
