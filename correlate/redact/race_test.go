//go:build race

package redact

// raceEnabled is true under -race, where sync.Pool drops entries on purpose
// and allocation counts of code using it (package regexp) mean nothing.
const raceEnabled = true
