// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Recognising HTTP/1.x from the first bytes of a read or write.
#pragma once

// Does data start like an HTTP/1.x message: "HTTP/1." (a response) or an
// upper-case method followed by a space and a '/' or an absolute URI?
static __always_inline bool looks_like_http(const char p[16])
{
	if (p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/' && p[5] == '1' && p[6] == '.')
		return true;
	int i = 0;
#pragma unroll
	for (; i < 8; i++) {
		if (p[i] < 'A' || p[i] > 'Z')
			break;
	}
	if (i < 3 || i > 7 || p[i] != ' ')
		return false;
	char c = p[i + 1];
	return c == '/' || c == '*' || (c >= 'a' && c <= 'z');
}

// Do the first n bytes of p equal those of s?
static __always_inline bool starts(const char *p, const char *s, int n)
{
#pragma unroll
	for (int i = 0; i < n; i++) {
		if (p[i] != s[i])
			return false;
	}
	return true;
}

// Does a request (its first 16 bytes) POST to a model API at its usual
// path: /v1/chat/completions, /v1/completions, /v1/embeddings,
// /v1/responses, /v1/messages (OpenAI's and Anthropic's shapes),
// /api/chat, /api/generate, /api/embed (Ollama's)? User space
// (correlate/protocols/genai) decides from the whole path; this only says
// which responses are worth their body's bytes, so a prefix is enough
// (a gateway's longer prefix is not seen here). Only request heads get
// here: nothing else pays for it.
static __always_inline bool looks_like_genai(const char p[16])
{
	if (!starts(p, "POST /", 6))
		return false;
	const char *q = p + 6;
	if (starts(q, "v1/", 3))
		return starts(q + 3, "chat/co", 7) || starts(q + 3, "complet", 7) || starts(q + 3, "embeddi", 7) ||
		       starts(q + 3, "respons", 7) || starts(q + 3, "message", 7);
	if (starts(q, "api/", 4))
		return starts(q + 4, "chat", 4) || starts(q + 4, "generat", 6) || starts(q + 4, "embed", 5);
	return false;
}
