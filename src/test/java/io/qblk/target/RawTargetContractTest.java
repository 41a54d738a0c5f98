package io.qblk.target;

import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.Preallocation;
import io.qblk.testing.FaultyBackend;
import java.io.IOException;
import java.nio.file.Path;

/** The contract for raw files. */
class RawTargetContractTest extends BlockTargetContractTest {
    @Override ImageFormat format() { return ImageFormat.RAW; }
    @Override void create(Path f) throws IOException { RawTarget.create(f, SIZE, Preallocation.OFF); }

    @Override
    Faulty openFaulty() throws IOException {
        FaultyBackend b = new FaultyBackend(PosixFileBackend.open(file(), false));
        return new Faulty(TargetOpener.rawTarget(b), b);
    }
}
