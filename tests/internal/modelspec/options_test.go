package modelspec

import (
	"reflect"
	"testing"
	"time"
)

// TestApplyRoundTrip: String renders every option so that Apply gives the
// same options back, from the defaults and from a changed set.
func TestApplyRoundTrip(t *testing.T) {
	changed, err := Defaults().Apply("ttft=80,head=20.5,gap=10,chunks=7,in=3,out=-1,cached=1,cachewrite=2,reasoning=4," +
		"finish=stop|length,id=x1,rmodel=gpt-test-0613,say=w,usage=never,status=429,errtype=rate,errat=2,cut=3,malformed,dim=4")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{Defaults(), changed} {
		back, err := Defaults().Apply(o.String())
		if err != nil {
			t.Fatalf("Apply(%q): %v", o.String(), err)
		}
		if !reflect.DeepEqual(back, o) {
			t.Errorf("round trip:\n got %+v\nwant %+v", back, o)
		}
	}
	if changed.Head != 20500*time.Microsecond || changed.OutputTokens() != 7 || !changed.Malformed || len(changed.Finish) != 2 {
		t.Errorf("parsed %+v", changed)
	}
}

// TestApplyErrors: bad keys and values are refused with the field named.
func TestApplyErrors(t *testing.T) {
	for _, spec := range []string{"nope=1", "ttft", "ttft=-5", "ttft=abc", "chunks=-1", "status=200", "usage=sometimes",
		"malformed=2", "dim=0", "ttft=NaN"} {
		if _, err := Defaults().Apply(spec); err == nil {
			t.Errorf("Apply(%q) succeeded", spec)
		}
	}
}

// TestResolve: the header overrides the model's suffix, which overrides the
// defaults; the echoed name is the part before '@'.
func TestResolve(t *testing.T) {
	o, err := Resolve(Defaults(), "gpt-test@chunks=2,id=a", "id=b")
	if err != nil {
		t.Fatal(err)
	}
	if o.Chunks != 2 || o.ID != "b" || o.Input != Defaults().Input {
		t.Errorf("resolved %+v", o)
	}
	if name, opts := SplitModel("gpt-test@ttft=80"); name != "gpt-test" || opts != "ttft=80" {
		t.Errorf("SplitModel: %q %q", name, opts)
	}
}
