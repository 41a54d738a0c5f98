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
    }

    interface Nbd {
        /** Default NBD listen address for devices without nbd-address. */
        @WithDefault("127.0.0.1:10809")
        @Pattern(regexp = DeviceSpecs.ADDRESS_REGEX, message = "must be host:port")
        String address();
    }
}
