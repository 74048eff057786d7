package model

import "testing"

// TestUseGenAI: the GenAI exchange lives in the pooled span, comes back
// empty with every count unknown, and a span not from the pool gets its
// own.
func TestUseGenAI(t *testing.T) {
	s := NewSpan()
	s.UseHTTP()
	g := s.UseGenAI()
	if s.GenAI != g || g != &s.own.genai {
		t.Fatal("UseGenAI did not use the span's own exchange")
	}
	if g.MaxTokens != -1 || g.Usage.Input != -1 || g.Usage.Output != -1 || g.Usage.Reasoning != -1 {
		t.Errorf("counts not unknown: %+v", g)
	}
	g.RequestModel = "gpt-test"
	g.AddFinishReason("stop")
	s.Hold(1)
	s.Release()
	s2 := NewSpan()
	if s2.GenAI != nil {
		t.Error("a recycled span kept its GenAI pointer")
	}
	if g2 := s2.UseGenAI(); g2.RequestModel != "" || g2.NFinish != 0 || g2.Seed != -1 {
		t.Errorf("recycled exchange not reset: %+v", g2)
	}

	var own Span
	if g := own.UseGenAI(); g == nil || own.GenAI != g || g.ChoiceCount != -1 {
		t.Error("a span outside the pool got no exchange")
	}
}

func TestGenAIAPINames(t *testing.T) {
	for _, name := range GenAIAPINames() {
		a, ok := ParseGenAIAPI(name)
		if !ok || a.String() != name {
			t.Errorf("%q does not round-trip: %v %v", name, a, ok)
		}
	}
	if _, ok := ParseGenAIAPI("openai"); ok {
		t.Error("a provider name parsed as an API")
	}
}
