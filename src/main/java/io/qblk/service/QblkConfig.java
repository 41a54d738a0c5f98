package io.qblk.service;

import io.smallrye.config.ConfigMapping;
import io.smallrye.config.WithDefault;
import io.smallrye.config.WithName;
import jakarta.validation.constraints.Pattern;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * All of qblk's service configuration ({@code qblk.*}). SmallRye validates it at start-up and
 * reports every bad key at once; {@link DeviceSpecs} adds the cross-key checks.
 */
@ConfigMapping(prefix = "qblk")
public interface QblkConfig {

    /** Devices started at boot, by name ({@code qblk.devices.<name>.*}). */
    Map<String, DeviceConfig> devices();

    Api api();

    Images images();

    Nbd nbd();

    Ublk ublk();

    interface DeviceConfig {
        /** Image file; required unless target is null. */
        Optional<String> image();

        /** qcow2 (default), raw or null; checked by {@link DeviceSpecs} with the other device keys. */
        @WithDefault("qcow2")
        String target();

        /** nbd (default) or ublk. */
        @WithDefault("nbd")
        String frontend();

        /** ublk queues (1-64). */
        @WithDefault("1")
        int queues();

        /** Requests in flight per queue / per NBD connection (1-4096). */
        @WithDefault("128")
        int depth();

        @WithName("read-only")
        @WithDefault("false")
        boolean readOnly();

        /** host:port of the NBD listener (default {@code qblk.nbd.address}; port 0 = any free port). */
        @WithName("nbd-address")
        Optional<String> nbdAddress();

        /** Create the image with this size (e.g. 8G) when it does not exist. */
        @WithName("create-size")
        Optional<String> createSize();

        /**
         * Page-cache use of the image file: none (O_DIRECT for aligned requests) or writeback.
         * Default: {@code qblk.ublk.cache} for ublk devices, writeback for NBD devices.
         */
        Optional<String> cache();
    }

    interface Api {
        /** When set, mutating endpoints need {@code Authorization: Bearer <token>}. */
        Optional<String> token();
    }

    interface Images {
        /** Directories the API may create and open images in. */
        @WithName("allowed-dirs")
        @WithDefault("./data")
        List<String> allowedDirs();

        /**
         * What freeing a qcow2 cluster (discard, zeroes with unmap) does to the image file: unmap
         * punches it out so the file's disk usage shrinks, ignore keeps the blocks (qemu's discard=).
         */
        @WithDefault("unmap")
        String discard();
    }

    interface Ublk {
        /**
         * How ublk devices read and write their image files: auto (requests of 128 KiB and more
         * through the queue's io_uring, smaller ones with pread/pwrite), ring or pread. The
         * environment variable QBLK_UBLK_FILE_IO sets it too (as every qblk.* key).
         */
        @WithName("file-io")
        @WithDefault("auto")
        @Pattern(regexp = "auto|ring|pread", message = "must be auto, ring or pread")
        String fileIo();

        /**
         * Page-cache use of a ublk device's image unless the device sets {@code cache}: none
         * (default: O_DIRECT for aligned requests, like ublksrv and qemu-nbd --cache=none) or
         * writeback. The environment variable QBLK_UBLK_CACHE sets it too (as every qblk.* key).
         */
        @WithDefault("none")
        @Pattern(regexp = "none|writeback", message = "must be none or writeback")
        String cache();
    }

    interface Nbd {
        /** Default NBD listen address for devices without nbd-address. */
        @WithDefault("127.0.0.1:10809")
        @Pattern(regexp = DeviceSpecs.ADDRESS_REGEX, message = "must be host:port")
        String address();

        /**
         * Non-loopback hosts NBD may listen on (as written in nbd-address, e.g. {@code 0.0.0.0},
         * {@code 192.0.2.7}); a device asking for any other non-loopback host is refused. Default none.
         */
        @WithName("allowed-addresses")
        Optional<List<String>> allowedAddresses();

        /** Connections per listener at once (handshaking or serving); more are closed right after accept. */
        @WithName("max-connections")
        @WithDefault("1024")
        @jakarta.validation.constraints.Min(1)
        int maxConnections();

        /** A client that has not finished the handshake (TLS included) by then is disconnected. */
        @WithName("handshake-timeout")
        @WithDefault("10s")
        java.time.Duration handshakeTimeout();

        /**
         * Request and reply data all clients of one listener may hold in memory (e.g. 256M; at least
         * 32M); a client over its share is not read further until its replies drain. Default: half
         * the JVM's direct-memory limit, 64M..1G.
         */
        @WithName("in-flight-bytes")
        Optional<String> inFlightBytes();

        Tls tls();

        interface Tls {
            /** Directory with ca-cert.pem, server-cert.pem, server-key.pem (qemu's tls-creds-x509 layout). */
            Optional<String> dir();

            /** Refuse clients that do not start TLS; default: on for non-loopback listeners, off on loopback. */
            Optional<Boolean> required();

            /** Require a client certificate signed by ca-cert.pem. */
            @WithName("verify-peer")
            @WithDefault("false")
            boolean verifyPeer();

            /**
             * TLS versions offered, e.g. "1.3,1.2"; default 1.3,1.2, with verify-peer 1.2 (gnutls clients
             * send no RSA client certificate to a JSSE server under 1.3; see NbdTls).
             */
            Optional<String> protocols();
        }
    }
}
