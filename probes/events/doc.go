// Package events owns the maps that every probe shares (the ring buffer and
// the loss counters), reads the ring buffer without ever blocking the
// kernel side, and decodes its records into correlate events.
package events
