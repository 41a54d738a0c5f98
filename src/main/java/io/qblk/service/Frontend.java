package io.qblk.service;

import io.qblk.target.BlockTarget;
import java.io.IOException;
import java.util.Optional;

/**
 * A way of presenting a {@link BlockTarget} to the host (NBD export, ublk device). Implementations are
 * CDI beans; the {@link DeviceManager} picks the one whose {@link #type()} a device asks for.
 */
public interface Frontend {

    FrontendType type();

    /** Empty when the frontend can attach devices here; otherwise why not (e.g. "/dev/ublk-control missing"). */
    Optional<String> unavailableReason();

    /** Starts serving {@code target} under {@code spec.name()}; returns once the device accepts I/O. */
    Attachment attach(DeviceSpec spec, BlockTarget target) throws IOException;

    /** One served device. */
    interface Attachment {
        /** Where clients connect: {@code nbd://host:port/name} or {@code /dev/ublkbN}. */
        String endpoint();

        /** False once the frontend stopped serving (listener died, kernel removed the device, ...). */
        boolean alive();

        /** Stops accepting I/O, waits for in-flight requests, removes the device; does not close the target. */
        void detach() throws IOException;
    }
}
