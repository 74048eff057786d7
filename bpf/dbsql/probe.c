// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Go database/sql: one CLIENT span per query or exec, whatever the driver.
//
// Probed functions (Go >= 1.17, amd64 register ABI), through which every
// call of DB, Conn and Tx goes, and the two of prepared statements:
//
//   func (db *DB) queryDC(ctx, txctx context.Context, dc *driverConn,
//                         releaseConn func(error), query string, args []any) (*Rows, error)
//     entry: RAX = db, R8 = dc, R10/R11 = query    return: RBX/RCX = error
//   func (db *DB) execDC(ctx context.Context, dc *driverConn, release func(error),
//                        query string, args []any) (res Result, err error)
//     entry: RAX = db, RDI = dc, R8/R9 = query     return: RCX/RDI = error
//   func (s *Stmt) QueryContext(ctx context.Context, args ...any) (*Rows, error)
//     entry: RAX = s (s.db, s.query)         return: RBX/RCX = error
//   func (s *Stmt) ExecContext(ctx context.Context, args ...any) (Result, error)
//     entry: RAX = s                         return: RCX/RDI = error
//
// Each call ends at the entry of a function that runs once it is done
// (an emulated instruction), on the same goroutine:
//
//   query: (*Rows).initContextClose (RAX = rows) once the driver answered,
//          or the releaseConn(err) queryDC calls on an error (RAX/RBX =
//          err): (*driverConn).releaseConn-fm for DB, the release wrappers
//          of Tx and Conn for theirs;
//   exec:  execDC.func1, the deferred release(err) (RDX = closure holding
//          &err; the Result is in the execDC frame slot next to err);
//   Stmt:  the deferred s.closemu.RUnlock() (deferwrap1), called by the
//          method itself at each return: its results are in the stack
//          slots above the return address, covering the method's own
//          bad-connection retries.
//
// Frame slots differ from build to build: user space finds them in the
// functions' code (gobin.ResultSlots); when it cannot, that call ends on
// the function's RETs instead (query_return, exec_return).
//
// A DB, Conn or Tx call whose attempt fails with driver.ErrBadConn is tried
// again by database/sql on another connection (DB.retry), through queryDC
// or execDC again: the span waits for it and covers every attempt, so one
// call is one span with its final outcome.
//
// The span's parent is the span active on the calling goroutine or on the
// goroutine that started it (go_ctx), as for HTTP client calls. The query
// text is copied at entry, when the caller surely still holds it, and sent
// as it is: user space replaces its literals before anything leaves the
// agent.

#include "common/kernel.h"
#include "common/goabi.h"
#include "common/maps.h"
#include "dbsql/record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// The record and the enums user space reads, in BTF for bpf2go -type
// (probes/dbsql/gen.go); never used.
struct db_query_event *unused_db_query_event __attribute__((unused));
enum db_query_record *unused_db_query_record __attribute__((unused));
enum db_call *unused_db_call __attribute__((unused));
enum db_truncation *unused_db_truncation __attribute__((unused));

volatile const __u64 off_g_goid;
volatile const __u64 off_g_parent_goid;
volatile const __u64 off_db_connector;
volatile const __u64 off_stmt_db;
volatile const __u64 off_stmt_query;
volatile const __u64 off_dsn_connector_dsn;
volatile const __u64 off_dsn_connector_driver;
volatile const __u64 off_driver_result_resi;
volatile const __u64 off_driver_conn_ci;
volatile const __u8 read_conn_type; // off_driver_conn_ci is known
// Frames read at the deferred calls (see above): offsets, from the
// function's stack pointer, of the slots of its result words; for execDC
// where its closure keeps &err; for the Stmt methods their code's range,
// which the return address must be in.
volatile const __s64 off_exec_res;
volatile const __s64 off_exec_err;
volatile const __u64 exec_closure_err;
volatile const __s64 off_stmtq_err;
volatile const __u64 stmtq_start;
volatile const __u64 stmtq_end;
volatile const __s64 off_stmte_res;
volatile const __s64 off_stmte_err;
volatile const __u64 stmte_start;
volatile const __u64 stmte_end;
// Run-time address of errors.(*errorString).Error, fun[0] of the itab of an
// error made by errors.New, such as driver.ErrBadConn.
volatile const __u64 errorstring_error_fn;

// database/sql tries a call that failed with driver.ErrBadConn twice more
// (maxBadConnRetries, then once on a new connection).
#define MAX_BAD_CONN_RETRIES 2

struct inflight {
	__u64 start_ns;
	__u64 goid;
	__u64 db;
	__u64 query_ptr; // to recognise a second entry hit after morestack, or a retry
	__u64 conn_type; // itab of dc->ci
	struct span_ids ids;
	__u16 query_len;
	__u8 call;
	__u8 truncated;
	__u8 attempts; // attempts that failed with a bad connection
	__u8 retrying; // the last one did: the next attempt continues this span
	__u8 pad[2];
	__u64 retry_ns; // when it failed
	__u64 err_tab;  // and its error (driver.ErrBadConn, which stays alive)
	__u64 err_data;
	char query[DB_QUERY_MAX];
};

// Calls in progress, by goroutine (g pointer). database/sql never nests one
// probed call in another on the same goroutine.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct inflight);
} db_inflight SEC(".maps");

// Building an inflight entry takes more than the 512-byte stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inflight);
} db_scratch SEC(".maps");

static __always_inline void emit(struct inflight *in, __u64 end_ns, __u64 err_tab, __u64 err_data, __u64 result_data);

static __always_inline void enter(struct pt_regs *ctx, __u8 call, __u64 db, __u64 dc, struct go_string query)
{
	__u64 g = GO_G(ctx);
	__u64 goid = read_u64(g + off_g_goid);
	struct inflight *cur = bpf_map_lookup_elem(&db_inflight, &g);
	if (cur && cur->goid == goid && cur->query_ptr == query.ptr && cur->call == call) {
		// The same call again: after morestack, or database/sql trying it
		// again after a bad connection, which continues its span.
		if (cur->retrying) {
			cur->retrying = 0;
			cur->attempts++;
		}
		return;
	}
	if (cur && cur->retrying && cur->goid == goid) {
		// The retry failed before it reached queryDC or execDC again (no
		// connection): the call ended with the bad connection.
		emit(cur, cur->retry_ns, cur->err_tab, cur->err_data, 0);
	}

	__u32 zero = 0;
	struct inflight *in = bpf_map_lookup_elem(&db_scratch, &zero);
	if (!in)
		return;
	in->start_ns = bpf_ktime_get_ns();
	in->goid = goid;
	in->db = db;
	in->query_ptr = query.ptr;
	in->conn_type = 0;
	if (dc && read_conn_type)
		in->conn_type = read_u64(dc + off_driver_conn_ci); // the itab word
	in->call = call;
	in->truncated = 0;
	in->attempts = 0;
	in->retrying = 0;
	in->retry_ns = 0;
	in->err_tab = 0;
	in->err_data = 0;
	__builtin_memset(in->pad, 0, sizeof(in->pad));
	__builtin_memset(&in->ids, 0, sizeof(in->ids));
	in->query_len = copy_go_string(in->query, sizeof(in->query), query, &in->truncated, DB_TRUNC_QUERY);

	struct go_key key = go_key_of(goid);
	struct go_trace_ctx *parent = bpf_map_lookup_elem(&go_ctx, &key);
	if (!parent) {
		__u64 pgoid = read_u64(g + off_g_parent_goid);
		if (pgoid) {
			key.goid = pgoid;
			parent = bpf_map_lookup_elem(&go_ctx, &key);
		}
	}
	if (parent) {
		__builtin_memcpy(in->ids.trace_id, parent->trace_id, sizeof(in->ids.trace_id));
		__builtin_memcpy(in->ids.parent_id, parent->span_id, sizeof(in->ids.parent_id));
	} else {
		random_bytes(in->ids.trace_id, sizeof(in->ids.trace_id));
	}
	random_bytes(in->ids.span_id, sizeof(in->ids.span_id));
	if (bpf_map_update_elem(&db_inflight, &g, in, BPF_ANY))
		count(COUNTER_INFLIGHT_FULL);
}

SEC("uprobe/DB_queryDC")
int query_dc_enter(struct pt_regs *ctx)
{
	struct go_string q = {.ptr = ctx->r10, .len = ctx->r11};
	enter(ctx, DB_CALL_QUERY, GO_ARG1(ctx), GO_ARG6(ctx), q);
	return 0;
}

SEC("uprobe/DB_execDC")
int exec_dc_enter(struct pt_regs *ctx)
{
	struct go_string q = {.ptr = ctx->r8, .len = ctx->r9};
	enter(ctx, DB_CALL_EXEC, GO_ARG1(ctx), GO_ARG4(ctx), q);
	return 0;
}

static __always_inline void stmt_enter(struct pt_regs *ctx, __u8 call)
{
	__u64 s = GO_ARG1(ctx);
	struct go_string q = {};
	if (bpf_probe_read_user(&q, sizeof(q), (void *)(s + off_stmt_query))) {
		count(COUNTER_READ_FAILED);
		return;
	}
	enter(ctx, call, read_u64(s + off_stmt_db), 0, q);
}

SEC("uprobe/Stmt_QueryContext")
int stmt_query_enter(struct pt_regs *ctx)
{
	stmt_enter(ctx, DB_CALL_STMT_QUERY);
	return 0;
}

SEC("uprobe/Stmt_ExecContext")
int stmt_exec_enter(struct pt_regs *ctx)
{
	stmt_enter(ctx, DB_CALL_STMT_EXEC);
	return 0;
}

// Candidate message strings of the error (see db_query_event.err_msg).
static __always_inline void read_err_msg(struct db_query_event *e, __u64 err_data)
{
	const __u64 offs[DB_ERR_FIELDS] = {0, 32, 48};

	e->pad[0] = e->pad[1] = 0;
	for (int i = 0; i < DB_ERR_FIELDS; i++) {
		struct go_string msg = {};
		e->err_len[i] = 0;
		if (!err_data || bpf_probe_read_user(&msg, sizeof(msg), (void *)(err_data + offs[i])))
			continue;
		if (msg.len <= 0 || msg.len > 1 << 20)
			continue; // not a string
		__u8 cut = 0;
		e->err_len[i] = copy_go_string(e->err_msg[i], DB_ERR_MAX, msg, &cut, DB_TRUNC_ERR);
	}
}

// Which database: the connector's type, and for sql.Open's dsnConnector
// its driver's type and data source name.
static __always_inline void read_connector(struct db_query_event *e, __u64 db)
{
	struct go_iface conn = {};
	e->connector_type = 0;
	e->driver_type = 0;
	e->dsn_len[0] = e->dsn_len[1] = 0;
	if (!db || bpf_probe_read_user(&conn, sizeof(conn), (void *)(db + off_db_connector)) || !conn.data)
		return;
	e->connector_type = conn.tab;
	struct go_iface drv = {};
	if (!bpf_probe_read_user(&drv, sizeof(drv), (void *)(conn.data + off_dsn_connector_driver)))
		e->driver_type = drv.tab;
	const __u64 offs[DB_DSN_FIELDS] = {off_dsn_connector_dsn, 8};
	for (int i = 0; i < DB_DSN_FIELDS; i++) {
		struct go_string dsn = {};
		if (bpf_probe_read_user(&dsn, sizeof(dsn), (void *)(conn.data + offs[i])))
			continue;
		if (dsn.len <= 0 || dsn.len > 1 << 16)
			continue; // not a string
		e->dsn_len[i] = copy_go_string(e->dsn[i], DB_DSN_MAX, dsn, &e->truncated, DB_TRUNC_DSN);
	}
}

// The driver's Result inside database/sql's driverResult, which an exec
// returns as its Result (see db_query_event.result_type).
static __always_inline void read_result(struct db_query_event *e, __u64 result_data)
{
	struct go_iface resi = {};
	e->result_type = 0;
	e->result_words[0] = e->result_words[1] = 0;
	if (!result_data || bpf_probe_read_user(&resi, sizeof(resi), (void *)(result_data + off_driver_result_resi)))
		return;
	if (!resi.data || bpf_probe_read_user(e->result_words, sizeof(e->result_words), (void *)resi.data))
		return;
	e->result_type = resi.tab;
}

// Send the record of the call in. The caller deletes the entry.
static __always_inline void emit(struct inflight *in, __u64 end_ns, __u64 err_tab, __u64 err_data, __u64 result_data)
{
	struct db_query_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		return;
	}
	fill_header(&e->hdr, EVENT_DB_QUERY);
	e->hdr.ts_ns = end_ns;
	e->start_ns = in->start_ns;
	e->goid = in->goid;
	e->ids = in->ids;
	e->call = in->call;
	e->truncated = in->truncated;
	e->query_len = in->query_len;
	e->conn_type = in->conn_type;
	bpf_probe_read_kernel(e->query, sizeof(e->query), in->query);
	e->err_type = err_tab;
	read_err_msg(e, err_tab ? err_data : 0);
	read_result(e, err_tab ? 0 : result_data);
	read_connector(e, in->db);
	if (e->truncated)
		e->hdr.flags |= EVENT_FLAG_TRUNCATED;
	bpf_ringbuf_submit(e, wakeup_flags());
}

#define BAD_CONN_LEN 22

// Whether err is driver.ErrBadConn: errors.New("driver: bad connection").
static __always_inline bool bad_conn(__u64 err_tab, __u64 err_data)
{
	if (!itab_is(err_tab, errorstring_error_fn))
		return false;
	const char want[BAD_CONN_LEN + 1] = "driver: bad connection";
	struct go_string msg = {};
	char text[BAD_CONN_LEN];
	if (bpf_probe_read_user(&msg, sizeof(msg), (void *)err_data) || msg.len != BAD_CONN_LEN ||
	    bpf_probe_read_user(text, sizeof(text), (void *)msg.ptr))
		return false;
	bool same = true;
#pragma unroll
	for (int i = 0; i < BAD_CONN_LEN; i++)
		same = same && text[i] == want[i];
	return same;
}

// End the call in flight on this goroutine, when it is of kind call (0:
// any), with its error and, for an exec, the data word of its Result.
static __always_inline void leave(__u64 g, __u8 call, __u64 err_tab, __u64 err_data, __u64 result_data)
{
	struct inflight *in = bpf_map_lookup_elem(&db_inflight, &g);
	if (!in || in->retrying || (call && in->call != call))
		return;
	__u64 now = bpf_ktime_get_ns();
	if ((in->call == DB_CALL_QUERY || in->call == DB_CALL_EXEC) && in->attempts < MAX_BAD_CONN_RETRIES &&
	    bad_conn(err_tab, err_data)) {
		// database/sql tries again: the span goes on (see enter).
		in->retrying = 1;
		in->retry_ns = now;
		in->err_tab = err_tab;
		in->err_data = err_data;
		return;
	}
	emit(in, now, err_tab, err_data, result_data);
	bpf_map_delete_elem(&db_inflight, &g);
}

// func (rs *Rows) initContextClose(ctx, txctx context.Context): a query
// succeeded. Stmt.QueryContext calls it too, but its span ends when the
// method returns.
SEC("uprobe/Rows_initContextClose")
int query_end(struct pt_regs *ctx)
{
	leave(GO_G(ctx), DB_CALL_QUERY, 0, 0, 0);
	return 0;
}

// The releaseConn(err) method values queryDC calls when a query failed
// (RAX/RBX = err); they also run later, when rows are closed, with nothing
// in flight. A nil error here ends nothing: queryDC only passes errors.
SEC("uprobe/releaseConn_fm")
int query_release(struct pt_regs *ctx)
{
	if (!GO_ARG1(ctx))
		return 0;
	leave(GO_G(ctx), DB_CALL_QUERY, GO_ARG1(ctx), GO_ARG2(ctx), 0);
	return 0;
}

// execDC's deferred func() { release(err) }: RDX = the closure, holding
// &err at exec_closure_err; the Result is off_exec_res - off_exec_err bytes
// from err in execDC's frame.
SEC("uprobe/DB_execDC_func1")
int exec_end(struct pt_regs *ctx)
{
	__u64 errp = read_u64(ctx->dx + exec_closure_err);
	struct go_iface err = {};
	if (!errp || bpf_probe_read_user(&err, sizeof(err), (void *)errp))
		return 0;
	// The Result's data word, after its itab.
	__u64 res_data = err.tab ? 0 : read_u64(errp + (off_exec_res - off_exec_err) + 8);
	leave(GO_G(ctx), DB_CALL_EXEC, err.tab, err.data, res_data);
	return 0;
}

// The frame of the Stmt method that called this deferred function
// directly, through the stack pointer: the return address must be in the
// method (not in the runtime, which runs deferred calls after a recovered
// panic), and the method's stack pointer is just above it.
static __always_inline __u64 caller_sp(struct pt_regs *ctx, __u64 start, __u64 end)
{
	__u64 ret = read_u64(ctx->sp);
	if (!start || ret < start || ret >= end)
		return 0;
	return ctx->sp + 8;
}

// Stmt.QueryContext's deferred s.closemu.RUnlock(): (*Rows, error).
SEC("uprobe/Stmt_QueryContext_deferwrap1")
int stmt_query_end(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = bpf_map_lookup_elem(&db_inflight, &g);
	if (!in || in->call != DB_CALL_STMT_QUERY)
		return 0;
	__u64 sp = caller_sp(ctx, stmtq_start, stmtq_end);
	struct go_iface err = {};
	if (!sp || bpf_probe_read_user(&err, sizeof(err), (void *)(sp + off_stmtq_err)))
		return 0;
	leave(g, DB_CALL_STMT_QUERY, err.tab, err.data, 0);
	return 0;
}

// Stmt.ExecContext's deferred s.closemu.RUnlock(): (Result, error).
SEC("uprobe/Stmt_ExecContext_deferwrap1")
int stmt_exec_end(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = bpf_map_lookup_elem(&db_inflight, &g);
	if (!in || in->call != DB_CALL_STMT_EXEC)
		return 0;
	__u64 sp = caller_sp(ctx, stmte_start, stmte_end);
	struct go_iface err = {}, res = {};
	if (!sp || bpf_probe_read_user(&err, sizeof(err), (void *)(sp + off_stmte_err)) ||
	    bpf_probe_read_user(&res, sizeof(res), (void *)(sp + off_stmte_res)))
		return 0;
	leave(g, DB_CALL_STMT_EXEC, err.tab, err.data, err.tab ? 0 : res.data);
	return 0;
}

// Where a frame is not recognised, on every RET of the function:
// (*Rows, error), the error in RBX/RCX.
SEC("uprobe/db_query_ret")
int query_return(struct pt_regs *ctx)
{
	leave(GO_G(ctx), 0, GO_ARG2(ctx), GO_ARG3(ctx), 0);
	return 0;
}

// (Result, error): Result in RAX/RBX, the error in RCX/RDI.
SEC("uprobe/db_exec_ret")
int exec_return(struct pt_regs *ctx)
{
	leave(GO_G(ctx), 0, GO_ARG3(ctx), GO_ARG4(ctx), GO_ARG2(ctx));
	return 0;
}
