package io.qblk.target;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.testing.FaultyBackend;
import java.io.IOException;
import java.nio.file.Path;

/** The contract for qcow2 images through the engine. */
class Qcow2TargetContractTest extends BlockTargetContractTest {
    @Override ImageFormat format() { return ImageFormat.QCOW2; }
    @Override void create(Path f) throws IOException { Qcow2Image.create(f, CreateOptions.defaults(SIZE)); }

    @Override
    Faulty openFaulty() throws IOException {
        FaultyBackend b = new FaultyBackend(PosixFileBackend.open(file(), false));
        return new Faulty(new Qcow2Target(Qcow2Image.open(b, OpenOptions.defaults()), b), b);
    }
}
