# shellcheck shell=bash
# Configuration files of the peer servers, shared by scripts/bench.sh and
# scripts/manycore_probe.sh so that both benchmark the same settings: keep-alive
# and sendfile on, access logs off, limits high enough for 10,000 connections.
#
#   write_nginx_conf DIR PORT WORKERS ROOT [LISTEN_OPTIONS] [HTTP_DIRECTIVES]
#                    [TLS_PORT CERT KEY [KTLS]]
#   write_lighttpd_conf DIR PORT WORKERS ROOT [TLS_PORT CERT KEY]
#   write_h2o_conf DIR PORT THREADS ROOT [TLS_PORT CERT KEY]
#
# Each writes DIR/<server>.conf (DIR must exist) for a server on 127.0.0.1:PORT.
# With TLS_PORT, the same server also listens for HTTPS on 127.0.0.1:TLS_PORT
# with the certificate CERT and its key KEY (PEM files), the same root and
# settings: TLS 1.2 and 1.3, Mozilla's "intermediate" ciphers, session
# resumption (tickets) on.  KTLS=1 asks nginx to hand the encryption to the
# kernel (ssl_conf_command Options KTLS), so that sendfile works over TLS;
# the caller checks that nginx, OpenSSL and the kernel can do it.

# Mozilla's "intermediate" TLS 1.2 cipher list (ssl-config.mozilla.org); TLS
# 1.3 has its own suites, OpenSSL's defaults.  The DHE and RSA entries never
# apply to the ECDSA certificate, and are kept so the list is Mozilla's.
TLS_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305
TLS_GROUPS=X25519:prime256v1:secp384r1

# worker_connections must hold the 10,000 idle connections in one worker
# (accepts are not spread evenly); backlog 4096 like the kernel's somaxconn so
# a 2,000-connection burst is not throttled by nginx's default of 511.
# `user root` keeps root's workers able to read the work dir; as another user
# (a tool bundle needs no root) nginx would only warn about it.
write_nginx_conf() {
  local dir=$1 port=$2 workers=$3 root=$4 listen_options=${5:-} http_directives=${6:-} user=""
  local tls_port=${7:-} cert=${8:-} key=${9:-} ktls=${10:-0} tls_server="" ktls_line=""
  [[ $(id -u) == 0 ]] && user="user root;"
  ((ktls)) && ktls_line="ssl_conf_command Options KTLS;"
  [[ -z $tls_port ]] || tls_server="server {
        listen 127.0.0.1:$tls_port ssl backlog=4096 $listen_options;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve $TLS_GROUPS;
        ssl_ciphers $TLS_CIPHERS;
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:bench:10m;
        ssl_session_timeout 1d;
        ssl_session_tickets on;
        $ktls_line
        root $root;
        index index.html;
    }"
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
    $tls_server
}
CONF
}

# max-connections is per worker process, like nginx's worker_connections;
# lighttpd wants at most max-fds/2 of them. Idle keep-alive timeout 75 s
# (default 5 s) so an idle-connection test is not cut short.
# HTTPS needs mod_openssl (Debian: lighttpd-mod-openssl); session tickets are
# on by default, with keys lighttpd makes and rotates itself.
write_lighttpd_conf() {
  local dir=$1 port=$2 workers=$3 root=$4 tls_port=${5:-} cert=${6:-} key=${7:-}
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
  [[ -n $tls_port ]] || return 0
  cat >>"$dir/lighttpd.conf" <<CONF
server.modules += ( "mod_openssl" )
\$SERVER["socket"] == "127.0.0.1:$tls_port" {
    ssl.engine = "enable"
    ssl.pemfile = "$cert"
    ssl.privkey = "$key"
    ssl.openssl.ssl-conf-cmd = ( "MinProtocol" => "TLSv1.2", "Options" => "-ServerPreference",
                                 "CipherString" => "$TLS_CIPHERS", "Groups" => "$TLS_GROUPS" )
}
CONF
}

# max-connections defaults to 1024, too few for 2,000 and 10,000 connections;
# the idle timeout (http1-request-timeout) defaults to 10 s. `user: root`
# because h2o started as root otherwise switches to nobody; started as anyone
# else it stays that user.
# A second `listen` adds the HTTPS port (h2o takes the key more than once);
# OCSP stapling is off, as a self-signed certificate has no responder.
# Session resumption (cache and tickets) is on by default.
write_h2o_conf() {
  local dir=$1 port=$2 threads=$3 root=$4 user="# not root: h2o keeps its user"
  local tls_port=${5:-} cert=${6:-} key=${7:-} tls_listen=""
  [[ -z $tls_port ]] || tls_listen="listen:
  host: 127.0.0.1
  port: $tls_port
  ssl:
    certificate-file: $cert
    key-file: $key
    minimum-version: TLSv1.2
    cipher-suite: $TLS_CIPHERS
    cipher-preference: client
    ocsp-update-interval: 0"
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
$tls_listen
hosts:
  default:
    paths:
      /:
        file.dir: $root
CONF
}
