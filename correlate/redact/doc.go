// Package redact removes sensitive data from span contents before anything
// leaves the agent, and sanitises SQL text.
//
// Every exporter (OTLP, terminal, JSON, metrics, the web page) sees spans only
// after a Redactor has gone over their attribute values, so a secret that
// reaches a span is caught in one place. The agent calls it on every span on a
// small machine where it competes with the traced service for CPU, so the
// common case (a value with nothing to hide) costs one byte scan and no
// allocation, and the detectors are hand-written scanners rather than regular
// expressions. Only user-supplied patterns use package regexp.
//
// # Marker
//
// Whatever is removed is replaced by the fixed marker "REDACTED" (see Marker).
// One untyped marker keeps outputs short, stable across releases and free of
// the characters that detectors look for, which is what makes redaction
// idempotent: redacting an already redacted value changes nothing. What is kept
// around a match shows what was removed: "Bearer REDACTED", "user:REDACTED@",
// "token=REDACTED".
//
// # Detectors
//
// The built-in detectors, each of which can be turned off by name:
//
//   - phone: "+" (or %2B) followed by 8 to 15 digits (single spaces, dashes,
//     dots or a parenthesised group between groups of 2 or more); mainland China mobile numbers (11
//     digits 1[3-9]…, plain or grouped 3-4-4, optionally after 0086); North
//     American numbers grouped 3-3-4 (optionally after 1); numbers with a
//     leading trunk 0 grouped by separators (10 to 12 digits); 00 instead
//     of "+" before a grouped international number.
//   - cn_id: mainland China resident ID numbers: 17 digits and a check
//     character (digit or X) that satisfies ISO 7064 MOD 11-2, a region digit
//     1-8 and a real birth date between 1900 and 2100.
//   - card: 13 to 19 digits, plain or in groups split by one kind of
//     separator (space or dash), with a known issuer prefix and a valid Luhn
//     check digit.
//   - email: local@domain.tld, where the top-level label is 2 or more letters
//     and not a file extension such as png (so logo@2x.png stays).
//   - bearer: the credential after "Bearer " (the scheme is kept).
//   - api_key: well-known key formats: sk-…, sk-proj-…, sk_live_…, ghp_…,
//     github_pat_…, glpat-…, xox[bpaers]-…, AKIA/ASIA…, AIza…, npm_….
//   - jwt: three or more base64url segments starting with eyJ.
//   - url_password: the password in scheme://user:password@host.
//   - dsn_password: values of password-like keys (password, passwd, pwd, pass,
//     passphrase) in key=value connection strings, including quoted values and
//     spaces around "=", and the password in Go MySQL DSNs user:pass@tcp(…).
//   - sensitive_param: values of sensitive parameters in query strings,
//     key=value text, "key": "value" JSON and "Key: value" header lines.
//
// # Digit runs and the tricky negatives
//
// Phone, card and ID numbers are found in runs of digits. A run is a maximal
// sequence of digit groups joined by single spaces, dashes or dots (and
// parenthesised groups). A run counts only at word boundaries: it must not
// touch a letter, digit or underscore, nor be glued to a word by a dot or
// dash, nor to digits by a colon, comma or '+' (order-13812345678,
// v1.13812345678, 10:00:00.123456789 and 1.2.3+20240613123456 all stay).
// Dashes and dots bind their groups into one token, which is why dates,
// versions, IPv4 addresses and all-digit UUIDs never match: they are judged
// whole and fit no shape. Spaces are weaker: a window of space-separated
// groups may match on its own, so "ts 1718000000 13812345678" loses only the
// phone number. Text in other scripts counts as a boundary, so Chinese text
// such as 电话13812345678 is redacted.
//
// What stays, by rule: digit runs with letters attached (ORD13812345678),
// digits embedded in longer runs (a 12-digit number is never a mobile number),
// Unix timestamps in seconds or milliseconds (10 and 13 digits starting with 1
// fit no shape and no card issuer), UUIDs and hex hashes (letters attached),
// ISO dates and times, IPv4 addresses, versions, ports and status codes (too
// short or wrong shape), 18-digit numbers failing the ID checksum or date,
// and card-length numbers failing Luhn or the issuer prefix.
//
// # Sensitive parameter names
//
// A parameter name is sensitive when, ignoring case, it contains one of
// password, passwd, passphrase, pwd, secret, token, apikey, api_key, api-key,
// signature, credential, session, sessid, jwt, authorization, private_key,
// privatekey, access_key or accesskey; or when it has one of the words pass,
// key, auth, sig, otp or code at word boundaries (separators, digits or a
// lower-to-upper case change), so that apiKey and x-auth match but monkey,
// author, design and footprint do not. Names that only look sensitive
// (status_code, country_code, error_code and similar) are exempt. Names added
// through Config.SensitiveParams are matched as words.
//
// # Overlaps, idempotence and bounds
//
// Matches of different detectors that overlap or touch are merged, so every
// byte that any detector claims is removed and one marker is left. Removing a
// match can change what its neighbours look like (the "//" that made
// user@host a URL userinfo may go with it), so a value that changed is
// searched again, up to three passes, and the result is a fixed point:
// redacting it again returns it unchanged. A value already holding a marker
// is read with that in mind: an unquoted secret value that starts with a
// standalone marker is taken to be just the marker, and a marker next to
// digits counts as digits.
//
// Every match shrinks to the 8-byte marker or grows by at most 7 bytes, and
// the total growth of one value is capped at 512 bytes: past that, the rest of
// the value from the next match on is replaced by a single marker. Matches
// always begin and end at ASCII bytes, so valid UTF-8 stays valid.
//
// Every scanner is linear in the length of its input; searches around an '@'
// or a "://" look at most 256 bytes away.
//
// # SQL
//
// SanitizeSQL replaces literals in SQL text with "?" and drops comments;
// SQLOperation and SQLCollection extract db.operation.name and
// db.collection.name. They are package functions because sanitising does not
// depend on configuration.
package redact
