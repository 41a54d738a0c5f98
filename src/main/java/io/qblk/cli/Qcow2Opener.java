package io.qblk.cli;

import io.qblk.target.BlockTarget;

import java.io.IOException;
import java.nio.file.Path;

/** Opens a qcow2 image as a target (placeholder until the engine's Qcow2Target is merged). */
final class Qcow2Opener {
    private Qcow2Opener() {}

    static BlockTarget open(Path file) throws IOException {
        throw new IOException("qcow2 target not available in this build yet (use -t raw or -t null)");
    }
}
