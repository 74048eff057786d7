package correlate

import (
	"github.com/zerotrace/zerotrace/correlate/protocols"
	"github.com/zerotrace/zerotrace/correlate/protocols/http1"
	"github.com/zerotrace/zerotrace/correlate/protocols/mysql"
	"github.com/zerotrace/zerotrace/correlate/protocols/postgres"
	"github.com/zerotrace/zerotrace/correlate/protocols/redis"
)

// wireProtocol is a protocol the kernel path parses: its name on
// connections and the map, and its parser.
type wireProtocol struct {
	name  string
	parse protocols.New
}

// wireProtocols are the protocols the kernel path parses, by the number
// the probes give a socket they recognise as carrying it. A new one is a
// package under protocols/, its recognition in bpf/syscalls, and a line
// here.
var wireProtocols = map[SockProto]wireProtocol{
	ProtoHTTP:     {"http", http1.New},
	ProtoPostgres: {"postgresql", postgres.New},
	ProtoRedis:    {"redis", redis.New},
	ProtoMySQL:    {"mysql", mysql.New},
}
