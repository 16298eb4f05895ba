#!/bin/sh
# Guest helper: a virtio-blk vDPA device, made by qemu-storage-daemon's
# vduse-blk export inside the guest and bound to vhost_vdpa.
# Usage:
#   vdpa-setup.sh start [IMG|SIZE]   prints the /dev/vhost-vdpa-N path; the
#                                    image defaults to a 64M one in /run
#                                    (guest memory: faster than 9p)
#   vdpa-setup.sh stop               removes the device and stops the daemon
# One device at a time, with a new name for every start (vduse0, vduse1,
# ...): a daemon that dies without destroying its VDUSE device leaves it
# behind, marked broken once a message to it timed out, and a new export
# of the same name would take that device over and fail with "Failed to
# get features: Operation not permitted".
set -eu
state=/run/blkio-vdpa
seq=/run/blkio-vdpa.seq
name=

stop()
{
    [ -s "$state/name" ] && name=$(cat "$state/name")
    if [ -n "$name" ] && [ -e "/sys/bus/vdpa/devices/$name" ]; then
        # The vDPA device goes before its backend daemon.
        vdpa dev del "$name"
    fi
    if [ -s "$state/qsd.pid" ]; then
        pid=$(cat "$state/qsd.pid")
        kill "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do
            sleep 0.1
            i=$((i + 1))
        done
    fi
    rm -rf "$state"
}

start()
{
    arg=${1:-64M}
    mkdir -p "$state"
    n=0
    [ -s "$seq" ] && n=$(cat "$seq")
    echo $((n + 1)) >"$seq"
    name=vduse$n
    echo "$name" >"$state/name"
    if [ -f "$arg" ]; then
        img=$arg
    else
        img=$state/disk.img
        truncate -s "$arg" "$img"
    fi
    [ -c /dev/vduse/control ] || { echo "vdpa-setup: /dev/vduse/control missing (vduse module)" >&2; exit 1; }
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=n0,filename=$img" \
        --export "type=vduse-blk,id=e0,node-name=n0,name=$name,writable=on,num-queues=2" \
        --daemonize --pidfile "$state/qsd.pid"
    vdpa dev add name "$name" mgmtdev vduse
    i=0
    while [ $i -lt 50 ]; do
        for v in "/sys/bus/vdpa/devices/$name"/vhost-vdpa-*; do
            if [ -e "$v" ] && [ -c "/dev/$(basename "$v")" ]; then
                echo "/dev/$(basename "$v")"
                return 0
            fi
        done
        sleep 0.1
        i=$((i + 1))
    done
    echo "vdpa-setup: no vhost-vdpa device for $name" >&2
    stop
    exit 1
}

case ${1:-} in
start) shift; start "$@" ;;
stop)  stop ;;
*)     echo "usage: vdpa-setup.sh start [IMG|SIZE] | stop" >&2; exit 2 ;;
esac
