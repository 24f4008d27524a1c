# shellcheck shell=bash
# Configuration files of the peer servers, shared by scripts/bench.sh and
# scripts/manycore_probe.sh so that both benchmark the same settings: keep-alive
# and sendfile on, access logs off, limits high enough for 10,000 connections.
#
#   write_nginx_conf DIR PORT WORKERS ROOT [LISTEN_OPTIONS] [HTTP_DIRECTIVES]
#   write_lighttpd_conf DIR PORT WORKERS ROOT
#   write_h2o_conf DIR PORT THREADS ROOT
#
# Each writes DIR/<server>.conf (DIR must exist) for a server on 127.0.0.1:PORT.

# worker_connections must hold the 10,000 idle connections in one worker
# (accepts are not spread evenly); backlog 4096 like the kernel's somaxconn so
# a 2,000-connection burst is not throttled by nginx's default of 511.
# `user root` keeps root's workers able to read the work dir; as another user
# (a tool bundle needs no root) nginx would only warn about it.
write_nginx_conf() {
  local dir=$1 port=$2 workers=$3 root=$4 listen_options=${5:-} http_directives=${6:-} user=""
  [[ $(id -u) == 0 ]] && user="user root;"
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<CONF
$user
worker_processes $workers;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 75;
    types { text/html html; application/octet-stream bin; }
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    $http_directives
    server {
        listen 127.0.0.1:$port backlog=4096 $listen_options;
        root $root;
        index index.html;
    }
}
CONF
}

# max-connections is per worker process, like nginx's worker_connections;
# lighttpd wants at most max-fds/2 of them. Idle keep-alive timeout 75 s
# (default 5 s) so an idle-connection test is not cut short.
write_lighttpd_conf() {
  local dir=$1 port=$2 workers=$3 root=$4
  cat >"$dir/lighttpd.conf" <<CONF
server.document-root = "$root"
server.bind = "127.0.0.1"
server.port = $port
server.max-worker = $workers
server.network-backend = "sendfile"
server.max-keep-alive-requests = 100000
server.max-keep-alive-idle = 75
server.max-fds = 20000
server.max-connections = 10000
server.listen-backlog = 4096
server.errorlog = "$dir/error.log"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", ".bin" => "application/octet-stream" )
CONF
}

# max-connections defaults to 1024, too few for 2,000 and 10,000 connections;
# the idle timeout (http1-request-timeout) defaults to 10 s. `user: root`
# because h2o started as root otherwise switches to nobody; started as anyone
# else it stays that user.
write_h2o_conf() {
  local dir=$1 port=$2 threads=$3 root=$4 user="# not root: h2o keeps its user"
  [[ $(id -u) == 0 ]] && user="user: root"
  cat >"$dir/h2o.conf" <<CONF
$user
num-threads: $threads
max-connections: 20000
http1-request-timeout: 75
error-log: $dir/error.log
pid-file: $dir/h2o.pid
listen:
  host: 127.0.0.1
  port: $port
hosts:
  default:
    paths:
      /:
        file.dir: $root
CONF
}
