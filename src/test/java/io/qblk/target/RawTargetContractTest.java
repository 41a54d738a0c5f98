package io.qblk.target;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.Preallocation;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The contract for raw files, opened through {@link TargetOpener} like every frontend opens them. */
class RawTargetContractTest extends BlockTargetContractTest {
    private Path file() throws IOException {
        Path f = dir.resolve("disk.raw");
        if (!Files.exists(f)) RawTarget.create(f, SIZE, Preallocation.OFF);
        return f;
    }

    @Override
    BlockTarget open(boolean readOnly) throws IOException {
        return TargetOpener.open(file(), TargetOptions.defaults().withFormat(ImageFormat.RAW).withReadOnly(readOnly));
    }

    @Override
    Faulty openFaulty() throws IOException {
        FaultyBackend b = new FaultyBackend(PosixFileBackend.open(file(), false));
        return new Faulty(TargetOpener.rawTarget(b), b);
    }
}
