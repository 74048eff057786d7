package redact

import (
	"slices"
	"strings"
	"testing"
)

func mustNew(t testing.TB, cfg Config) *Redactor {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// detectorSamples holds, per built-in detector, an input that only it
// redacts and the expected output.
var detectorSamples = map[string][2]string{
	"phone":           {"call 13812345678", "call REDACTED"},
	"cn_id":           {"id 11010519491231002X", "id REDACTED"},
	"email":           {"mail bob@example.com", "mail REDACTED"},
	"card":            {"card 4111 1111 1111 1111", "card REDACTED"},
	"bearer":          {"Bearer abc123", "Bearer REDACTED"},
	"api_key":         {"k ghp_0123456789abcdefghijABCDEFGHIJ012345", "k REDACTED"},
	"jwt":             {"t eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "t REDACTED"},
	"url_password":    {"http://u:pw@host/", "http://u:REDACTED@host/"},
	"dsn_password":    {"u:pw@tcp(db:3306)/x", "u:REDACTED@tcp(db:3306)/x"},
	"sensitive_param": {"a=1&token=t", "a=1&token=REDACTED"},
}

// TestEachDetector checks every detector alone: its sample is redacted when
// it is on and left alone when it is turned off by name.
func TestEachDetector(t *testing.T) {
	all := BuiltinDetectors()
	if len(all) != len(detectorSamples) {
		t.Fatalf("BuiltinDetectors() = %v, but %d samples", all, len(detectorSamples))
	}
	for _, name := range all {
		sample, ok := detectorSamples[name]
		if !ok {
			t.Fatalf("no sample for detector %q", name)
		}
		t.Run(name, func(t *testing.T) {
			on := mustNew(t, Config{})
			if got := on.String(sample[0]); got != sample[1] {
				t.Errorf("enabled: String(%q) = %q, want %q", sample[0], got, sample[1])
			}
			off := mustNew(t, Config{Disable: []string{name}})
			if got := off.String(sample[0]); got != sample[0] {
				t.Errorf("disabled: String(%q) = %q, want it unchanged", sample[0], got)
			}
			if slices.Contains(off.Detectors(), name) {
				t.Errorf("Detectors() still lists %q: %v", name, off.Detectors())
			}
		})
	}
}

func TestNoAllocWhenClean(t *testing.T) {
	r := mustNew(t, Config{})
	for _, v := range append(spanValues, "page=2&q=hello%20world") {
		allocs := testing.AllocsPerRun(100, func() {
			_ = r.String(v)
			_ = r.URLQuery(v)
			_ = r.URL(v)
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocations, want 0", v, allocs)
		}
	}
	// Already redacted values must come back as they are, not as copies.
	for _, v := range []string{"token=REDACTED", "Bearer REDACTED", "postgres://u:REDACTED@h/db"} {
		if allocs := testing.AllocsPerRun(100, func() { _ = r.String(v) }); allocs != 0 {
			t.Errorf("%q: %v allocations, want 0", v, allocs)
		}
	}
}

func TestLuhn(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"4111111111111111", true},
		{"4111111111111112", false},
		{"79927398713", true},
		{"79927398710", false},
		{"0000000000000000", true},
	} {
		if got := luhn([]byte(c.in)); got != c.want {
			t.Errorf("luhn(%s) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestValidCNID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"11010519491231002X", true},
		{"11010519491231002x", true},
		{"510108198512317654", true},
		{"440524188001010014", false}, // born 1880
		{"110105200002290013", true},  // leap day
		{"110105190002290011", false}, // 1900 was not a leap year
		{"110105194912310020", false}, // wrong check digit
		{"110105194913310021", false}, // month 13, right check digit
		{"910105194912310029", false}, // no region starts with 9
		{"110105189912310011", false}, // born before 1900
	} {
		check := c.in[17]
		if check == 'x' {
			check = 'X'
		}
		if got := validCNID([]byte(c.in[:17]), check); got != c.want {
			t.Errorf("validCNID(%s) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestPlausibleIIN(t *testing.T) {
	yes := []string{"4000", "5100", "5599", "2221", "2720", "3400", "3700", "3000", "3050", "3600", "3528", "6011", "6200", "5000", "5800"}
	no := []string{"1000", "2220", "2721", "3100", "3060", "7000", "8000", "9000", "0000", "5900"}
	for _, p := range yes {
		if !plausibleIIN([]byte(p)) {
			t.Errorf("plausibleIIN(%s) = false", p)
		}
	}
	for _, p := range no {
		if plausibleIIN([]byte(p)) {
			t.Errorf("plausibleIIN(%s) = true", p)
		}
	}
}

func TestSensitiveName(t *testing.T) {
	r := mustNew(t, Config{SensitiveParams: []string{"ssn", "x-tenant-pin"}})
	yes := []string{
		"password", "PASSWORD", "db_passwd", "pwd", "passphrase", "client_secret",
		"access_token", "accessToken", "X-Amz-Security-Token", "apikey", "api_key", "api-key",
		"apiKey", "key", "private_key", "signature", "sig", "X-Amz-Credential", "session_id",
		"JSESSIONID", "PHPSESSID", "jwt", "auth", "x-auth", "Authorization", "otp", "code",
		"auth_code", "pass", "user[password]", "ssn", "user_ssn", "userSsn", "X-Tenant-Pin",
		"x-tenant-pin",
	}
	no := []string{
		"page", "limit", "sort", "q", "monkey", "keyword", "author", "design", "footprint",
		"compass", "status_code", "statusCode", "STATUS-CODE", "country_code", "zipcode",
		"error_code", "classname", "passport", "user", "id", "",
	}
	for _, n := range yes {
		if !r.sensitiveName(n, r.on) {
			t.Errorf("sensitiveName(%q) = false", n)
		}
	}
	for _, n := range no {
		if r.sensitiveName(n, r.on) {
			t.Errorf("sensitiveName(%q) = true", n)
		}
	}
	// With only dsn_password on, only password-like names count.
	dsn := mustNew(t, Config{Disable: []string{"sensitive_param"}})
	if !dsn.sensitiveName("Pwd", dsn.on) || dsn.sensitiveName("token", dsn.on) {
		t.Error("dsn_password alone: want Pwd sensitive and token not")
	}
	if got := dsn.String("host=x password=p token=t"); got != "host=x password=REDACTED token=t" {
		t.Errorf("dsn_password alone: %q", got)
	}
}

func TestGrowthCap(t *testing.T) {
	r := mustNew(t, Config{})
	// Every 1-byte value grows by 7 bytes: 1000 of them would add 7000.
	in := strings.Repeat("k=a&key=b&", 1000)
	out := r.String(in)
	if len(out) > len(in)+maxGrowth+len(Marker) {
		t.Fatalf("output grew from %d to %d bytes", len(in), len(out))
	}
	if !strings.HasSuffix(out, Marker) || strings.Contains(out, "key=b&key") {
		t.Fatalf("output past the cap is not collapsed: ...%q", out[len(out)-40:])
	}
	if again := r.String(out); again != out {
		t.Fatalf("collapsed output not idempotent")
	}
}

func TestNilRedactorRedacts(t *testing.T) {
	var r *Redactor
	if got := r.String("token=abc"); got != "token=REDACTED" {
		t.Errorf("nil Redactor: %q", got)
	}
	if !r.Enabled() || len(r.Detectors()) != len(builtinNames) {
		t.Error("nil Redactor should behave like the default one")
	}
}

func TestPatterns(t *testing.T) {
	r := mustNew(t, Config{Patterns: []Pattern{
		{Name: "employee", Regex: `\bEMP-\d{6}\b`},
		{Name: "order", Regex: `order#(\d{2})\d+`, Replacement: "order#${1}xx"},
		{Name: "empty-matches", Regex: `q*`},
	}})
	if got := r.String("by EMP-123456 for order#998877"); got != "by REDACTED for order#99xx" {
		t.Errorf("patterns: %q", got)
	}
	if got := r.String("abc"); got != "abc" {
		t.Errorf("empty matches must be ignored: %q", got)
	}
	if got := r.URLQuery("who=EMP-123456"); got != "who=REDACTED" {
		t.Errorf("patterns in URLQuery: %q", got)
	}
	if d := r.Detectors(); !slices.Contains(d, "employee") || !slices.Contains(d, "phone") {
		t.Errorf("Detectors() = %v", d)
	}
	big := mustNew(t, Config{Patterns: []Pattern{{Name: "big", Regex: `a`, Replacement: strings.Repeat("Z", 100)}}})
	in := strings.Repeat("a", 100)
	if out := big.String(in); len(out) > len(in)+maxGrowth+len(Marker) {
		t.Errorf("pattern output grew from %d to %d", len(in), len(out))
	}
}

func TestPatternsNoAllocWhenClean(t *testing.T) {
	if raceEnabled {
		t.Skip("regexp's sync.Pool allocates under -race")
	}
	r := mustNew(t, Config{Patterns: []Pattern{{Name: "employee", Regex: `EMP-\d{6}`}}})
	for _, v := range spanValues {
		if allocs := testing.AllocsPerRun(100, func() { _ = r.String(v) }); allocs != 0 {
			t.Errorf("%q: %v allocations with a pattern configured", v, allocs)
		}
	}
}
