package model

import "net/netip"

// HTTP is one HTTP request and its response, seen from the server (a SERVER
// span) or from the client (a CLIENT span). Fields a capture path cannot
// know stay at their zero value and produce no attribute.
type HTTP struct {
	// Method is the request method as sent ("GET", "BREW"); "" for a
	// client means GET, as net/http sends it.
	Method string
	// Scheme is "http" or "https"; "" when unknown.
	Scheme string
	// Host is the request's host[:port]: the Host header on the server,
	// the URL's host on the client.
	Host string
	// Path and Query are the request target's path and raw query, as
	// sent (before redaction, which semconv does).
	Path, Query string
	// Route is the path template that matched (http.route), "" when none
	// or unknown.
	Route string
	// Version is the protocol version as the semantic conventions write
	// it: "1.0", "1.1", "2"; "" when unknown.
	Version string

	// Status is the response's status code; 0 when there was no response
	// or it could not be read.
	Status int
	// RequestBodySize is the request body's length when declared (> 0).
	RequestBodySize int64
	// ResponseBodySize is the body bytes of the response, when
	// ResponseBodyKnown.
	ResponseBodySize  int64
	ResponseBodyKnown bool

	// Local is the server's own socket address on a server span; Peer the
	// other end of the connection (the client on a server span, the
	// server on a client span). Invalid when unknown.
	Local, Peer netip.AddrPort
}

// DB is one call to a database: a query, a statement execution, a command.
type DB struct {
	// System is db.system.name: "postgresql", "mysql", "sqlite", "redis".
	System string
	// Query is db.query.text, already sanitized by its producer: SQL
	// literals replaced by '?', command arguments by '?'.
	Query string
	// Operation and Collection are db.operation.name and
	// db.collection.name, "" when the text does not show them.
	Operation, Collection string
	// Namespace is db.namespace: the database name.
	Namespace string
	// ServerAddress and ServerPort name the server as the program was
	// told of it (a data source name) or as the connection shows it.
	ServerAddress string
	ServerPort    int
	// Peer is the connection's other end, when the capture saw the socket.
	Peer netip.AddrPort
	// Transport is network.transport: "tcp", "unix", or "" when unknown.
	Transport string
	// ReturnedRows (db.response.returned_rows) and RowsAffected are -1
	// when unknown.
	ReturnedRows, RowsAffected int64
	// StatusCode is db.response.status_code: the SQLSTATE, the server's
	// error number; "" when the call did not fail with one.
	StatusCode string
	// Prepared: the call executed a prepared statement.
	Prepared bool
	// ServerVersion is the server's version string, when the connection's
	// handshake showed it.
	ServerVersion string
}

// NewDB returns a DB of the given system with its counts unknown.
func NewDB(system string) *DB {
	return &DB{System: system, ReturnedRows: -1, RowsAffected: -1}
}
