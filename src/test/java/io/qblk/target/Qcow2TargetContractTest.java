package io.qblk.target;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The contract for qcow2 images through the engine, opened through {@link TargetOpener}. */
class Qcow2TargetContractTest extends BlockTargetContractTest {
    private Path file() throws IOException {
        Path f = dir.resolve("disk.qcow2");
        if (!Files.exists(f)) Qcow2Image.create(f, CreateOptions.defaults(SIZE));
        return f;
    }

    @Override
    BlockTarget open(boolean readOnly) throws IOException {
        return TargetOpener.open(file(), TargetOptions.defaults().withFormat(ImageFormat.QCOW2).withReadOnly(readOnly));
    }

    @Override
    Faulty openFaulty() throws IOException {
        FaultyBackend b = new FaultyBackend(PosixFileBackend.open(file(), false));
        return new Faulty(new Qcow2Target(Qcow2Image.open(b, OpenOptions.defaults()), b), b);
    }
}
