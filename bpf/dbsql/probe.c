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

struct inflight {
	__u64 start_ns;
	__u64 goid;
	__u64 db;
	__u64 query_ptr; // to recognise a second entry hit after morestack
	__u64 conn_type; // itab of dc->ci
	struct span_ids ids;
	__u16 query_len;
	__u8 call;
	__u8 truncated;
	__u8 pad[4];
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

static __always_inline void enter(struct pt_regs *ctx, __u8 call, __u64 db, __u64 dc, struct go_string query)
{
	__u64 g = GO_G(ctx);
	__u64 goid = read_u64(g + off_g_goid);
	struct inflight *cur = bpf_map_lookup_elem(&db_inflight, &g);
	if (cur && cur->goid == goid && cur->query_ptr == query.ptr && cur->call == call)
		return; // the same call again, after morestack

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

static __always_inline void leave(struct pt_regs *ctx, __u64 err_tab, __u64 err_data, __u64 result_data)
{
	__u64 g = GO_G(ctx);
	struct inflight *in = bpf_map_lookup_elem(&db_inflight, &g);
	if (!in) {
		count(COUNTER_NO_ENTRY);
		return;
	}
	struct db_query_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_RINGBUF_FULL);
		bpf_map_delete_elem(&db_inflight, &g);
		return;
	}
	fill_header(&e->hdr, EVENT_DB_QUERY);
	e->start_ns = in->start_ns;
	e->goid = in->goid;
	e->ids = in->ids;
	e->call = in->call;
	e->truncated = in->truncated;
	e->query_len = in->query_len;
	e->conn_type = in->conn_type;
	bpf_probe_read_kernel(e->query, sizeof(e->query), in->query);
	__u64 db = in->db;
	bpf_map_delete_elem(&db_inflight, &g);

	e->err_type = err_tab;
	read_err_msg(e, err_tab ? err_data : 0);
	read_result(e, err_tab ? 0 : result_data);
	read_connector(e, db);
	if (e->truncated)
		e->hdr.flags |= EVENT_FLAG_TRUNCATED;
	bpf_ringbuf_submit(e, wakeup_flags());
}

// (*Rows, error): the error in RBX/RCX.
SEC("uprobe/db_query_ret")
int query_return(struct pt_regs *ctx)
{
	leave(ctx, GO_ARG2(ctx), GO_ARG3(ctx), 0);
	return 0;
}

// (Result, error): Result in RAX/RBX, the error in RCX/RDI.
SEC("uprobe/db_exec_ret")
int exec_return(struct pt_regs *ctx)
{
	leave(ctx, GO_ARG3(ctx), GO_ARG4(ctx), GO_ARG2(ctx));
	return 0;
}
