// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// The record of the database/sql probe (probes/dbsql decodes it).
#pragma once

#include "common/event.h"

// Its type in event_header.
enum db_query_record {
	EVENT_DB_QUERY = 3,
};

#define DB_QUERY_MAX 1024
#define DB_DSN_MAX 128
#define DB_DSN_FIELDS 2
#define DB_ERR_MAX 128
// Offsets in an error's struct at which a message string is read: the
// first field (errors.errorString, fmt.wrapError, modernc.org/sqlite.Error),
// 32 (lib/pq.Error.Message, after Severity and Code) and 48
// (pgconn.PgError.Message, after Severity, SeverityUnlocalized and Code).
#define DB_ERR_FIELDS 3

// Which database/sql call a db_query_event comes from.
enum db_call {
	DB_CALL_QUERY = 1,      // DB/Conn/Tx Query*, QueryRow* (DB.queryDC)
	DB_CALL_EXEC = 2,       // DB/Conn/Tx Exec* (DB.execDC)
	DB_CALL_STMT_QUERY = 3, // Stmt.QueryContext (and Query, QueryRow*)
	DB_CALL_STMT_EXEC = 4,  // Stmt.ExecContext (and Exec)
};

// Bits of db_query_event.truncated.
enum db_truncation {
	DB_TRUNC_QUERY = 1 << 0,
	DB_TRUNC_DSN = 1 << 1,
	DB_TRUNC_ERR = 1 << 2,
};

// One database/sql call, sent when it returns.
struct db_query_event {
	struct event_header hdr; // hdr.ts_ns is when the call returned
	__u64 start_ns;
	__u64 goid;
	struct span_ids ids;
	// itab of the error returned (0 for none), to name its type.
	__u64 err_type;
	// itab of DB.connector, to name it; when it is database/sql's
	// dsnConnector (sql.Open), driver_type is the itab of its driver and
	// dsn[0] its data source name, else both mean nothing. dsn[1] is the
	// string at the connector's offset 8, the data source name of pgx's
	// stdlib connector.
	__u64 connector_type;
	__u64 driver_type;
	// itab of the connection the call ran on (driverConn.ci, a
	// driver.Conn), for calls through queryDC and execDC; 0 for prepared
	// statements, or when unknown. The connection's type is the real
	// driver's even when the program registers a wrapper driver or
	// connector whose type names no database.
	__u64 conn_type;
	// For an exec: the itab of the driver's Result and its first two
	// words, in which user space finds the rows affected for the result
	// types it knows (driver.RowsAffected, modernc.org/sqlite's result).
	__u64 result_type;
	__s64 result_words[2];
	__u16 query_len;
	__u16 dsn_len[DB_DSN_FIELDS];
	__u8 call;      // enum db_call
	__u8 truncated; // enum db_truncation
	// err_msg[i] is the string at the i-th offset of DB_ERR_FIELDS in the
	// error's struct, if one looks like a string there: user space picks
	// the one that is the message of the error's type, if any.
	__u16 err_len[DB_ERR_FIELDS];
	__u8 pad[2];
	char query[DB_QUERY_MAX];
	char dsn[DB_DSN_FIELDS][DB_DSN_MAX];
	char err_msg[DB_ERR_FIELDS][DB_ERR_MAX];
};
