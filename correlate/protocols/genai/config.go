package genai

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/zerotrace/zerotrace/correlate/model"
)

// Config is what the agent's configuration says about model calls: which
// requests are calls (Routes), what is kept of them (content), which
// provider a host stands for and what a model's tokens cost. One Config
// serves every capture path: the parsers read Recognize and Options from
// it, the correlator calls Settle on every span with a GenAI exchange. A
// nil *Config is the defaults (no content, the default routes, the API's
// provider, no prices). It is not changed once in use.
type Config struct {
	// Content: keep prompts and answers (gen_ai.capture_content), each
	// text cut at MaxContent bytes (0: DefaultMaxContent).
	Content    bool
	MaxContent int
	// Routes recognises calls; nil: the default routes.
	Routes *Routes
	// Providers names the provider of a host ("host" or "host:port",
	// lower case) when the API's shape does not say it (an
	// OpenAI-compatible server that is really vLLM or a gateway).
	Providers map[string]string
	// Prices prices the calls; nil: none is priced.
	Prices *Prices
}

// Recognize says which API a request is a call to, by c's routes.
func (c *Config) Recognize(method, path string) (model.GenAIAPI, bool) {
	if c == nil || c.Routes == nil {
		return Recognize(method, path)
	}
	return c.Routes.Recognize(method, path)
}

// Options is what an Exchange of a call reads and keeps under c; strings
// interns its values (nil allocates each).
func (c *Config) Options(strings *Strings) Options {
	if c == nil {
		return Options{Strings: strings}
	}
	return Options{Content: c.Content, MaxContent: c.MaxContent, Strings: strings}
}

// Settle completes a span's GenAI exchange with what only the
// configuration knows, once its capture is done and before it is mapped
// to attributes: the provider its host is configured as, and the cost of
// its tokens. It is the one place both are decided, for every capture
// path.
func (c *Config) Settle(s *model.Span) {
	g := s.GenAI
	if c == nil || g == nil {
		return
	}
	if len(c.Providers) > 0 && s.HTTP != nil {
		if p, ok := c.provider(s.HTTP, s.Kind == trace.SpanKindServer); ok {
			g.Provider = p
		}
	}
	if c.Prices != nil {
		g.CostUSD, g.Priced = c.Prices.Cost(g)
	}
}

// provider finds the configured provider of the server of h: by the Host
// header (with its port, then without), then by the address the
// connection went to (a client's peer, a server's own address).
func (c *Config) provider(h *model.HTTP, server bool) (string, bool) {
	if h.Host != "" {
		host := strings.ToLower(h.Host)
		if p, ok := c.Providers[host]; ok {
			return p, true
		}
		if name, _, err := net.SplitHostPort(host); err == nil {
			if p, ok := c.Providers[strings.Trim(name, "[]")]; ok {
				return p, true
			}
		}
	}
	a := h.Peer
	if server {
		a = h.Local
	}
	if !a.IsValid() {
		return "", false
	}
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if p, ok := c.Providers[a.String()]; ok {
		return p, true
	}
	p, ok := c.Providers[a.Addr().String()]
	return p, ok
}

// Price is what a model's tokens cost, in US dollars per million tokens.
// CachedInput prices the input tokens read from a cache (the API's
// cache_read / cached_tokens); 0 prices them as Input.
type Price struct {
	Input, Output, CachedInput float64
}

// Prices is a price table: per model name, exact or a prefix ("gpt-4o*").
type Prices struct {
	exact    map[string]Price
	prefixes []prefixPrice // longest first
}

type prefixPrice struct {
	prefix string
	price  Price
}

// NewPrices builds a price table from model patterns: a name matches
// exactly, a name ending in '*' every model it is a prefix of, the longest
// such prefix winning over shorter ones and an exact name over any prefix.
// Prices must be finite and not negative.
func NewPrices(table map[string]Price) (*Prices, error) {
	p := &Prices{exact: map[string]Price{}}
	for name, pr := range table {
		if name == "" || name == "*" {
			return nil, fmt.Errorf("model %q: give a model name, or a prefix followed by '*'", name)
		}
		if i := strings.IndexByte(name, '*'); i >= 0 && i != len(name)-1 {
			return nil, fmt.Errorf("model %q: '*' may only end a name (a prefix)", name)
		}
		for _, v := range [...]struct {
			what string
			v    float64
		}{{"input", pr.Input}, {"output", pr.Output}, {"cached_input", pr.CachedInput}} {
			if v.v < 0 || math.IsNaN(v.v) || math.IsInf(v.v, 0) {
				return nil, fmt.Errorf("model %q: %s price %v: want a number of US dollars per million tokens, 0 or more", name, v.what, v.v)
			}
		}
		if prefix, ok := strings.CutSuffix(name, "*"); ok {
			p.prefixes = append(p.prefixes, prefixPrice{prefix, pr})
		} else {
			p.exact[name] = pr
		}
	}
	slices.SortFunc(p.prefixes, func(a, b prefixPrice) int {
		if len(a.prefix) != len(b.prefix) {
			return len(b.prefix) - len(a.prefix)
		}
		return strings.Compare(a.prefix, b.prefix)
	})
	return p, nil
}

// Lookup is the price of a model, if the table has one.
func (p *Prices) Lookup(name string) (Price, bool) {
	if p == nil || name == "" {
		return Price{}, false
	}
	if pr, ok := p.exact[name]; ok {
		return pr, true
	}
	for _, pp := range p.prefixes {
		if strings.HasPrefix(name, pp.prefix) {
			return pp.price, true
		}
	}
	return Price{}, false
}

// Cost is what a call cost by the table: its tokens at the price of the
// model that answered (the response's model, which APIs give with its
// version, e.g. gpt-4o-2024-08-06), else of the model asked for. False
// when neither is priced or the call reported no tokens. Input tokens
// include the cached ones (the conventions' meaning), priced at
// CachedInput when set; tokens of a kind not reported count as none (an
// embedding has no output).
func (p *Prices) Cost(g *model.GenAI) (float64, bool) {
	pr, ok := p.Lookup(g.ResponseModel)
	if !ok {
		if pr, ok = p.Lookup(g.RequestModel); !ok {
			return 0, false
		}
	}
	u := g.Usage
	if u.Input < 0 && u.Output < 0 {
		return 0, false
	}
	in, out := max(u.Input, 0), max(u.Output, 0)
	usd := float64(out) * pr.Output
	if cached := min(max(u.CacheRead, 0), in); cached > 0 && pr.CachedInput > 0 {
		usd += float64(in-cached)*pr.Input + float64(cached)*pr.CachedInput
	} else {
		usd += float64(in) * pr.Input
	}
	return usd / 1e6, true
}

// ParseRoute checks one configured route: path is a full path ("/llm/v2/
// generate", matched exactly) or, without a leading '/', one or two last
// segments ("chat/completions", matched at the end of any path); api is a
// name model.ParseGenAIAPI knows.
func ParseRoute(path, api string) (model.GenAIAPI, error) {
	a, ok := model.ParseGenAIAPI(api)
	if !ok {
		return model.GenAINone, fmt.Errorf("route %q: api %q is not one of %s", path, api, strings.Join(model.GenAIAPINames(), ", "))
	}
	if strings.ContainsAny(path, "?# \t") || strings.Trim(path, "/") == "" {
		return model.GenAINone, fmt.Errorf("route %q: want a path (/llm/generate) or its last one or two segments (llm/generate)", path)
	}
	if !strings.HasPrefix(path, "/") && strings.Count(strings.Trim(path, "/"), "/") > 1 {
		return model.GenAINone, fmt.Errorf("route %q: a suffix is one or two segments; start it with '/' to match a whole path", path)
	}
	return a, nil
}

// ParseProviderHost checks a configured provider's host: "host" or
// "host:port", no scheme or path; it returns it in the form Settle looks
// up (lower case, IPv6 without brackets unless a port follows).
func ParseProviderHost(host string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(host))
	bad := h == "" || strings.ContainsAny(h, "/ \t@?#")
	if !bad && strings.Count(h, ":") == 1 || strings.HasPrefix(h, "[") {
		name, port, err := net.SplitHostPort(h)
		if err != nil || name == "" {
			bad = true
		} else if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			bad = true
		}
	}
	if bad {
		return "", fmt.Errorf("provider host %q: want host or host:port (no scheme or path)", host)
	}
	return h, nil
}
