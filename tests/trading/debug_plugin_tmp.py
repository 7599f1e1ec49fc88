import asyncio, sys, pytest

@pytest.fixture(autouse=True)
async def _watchdog():
    async def dump():
        await asyncio.sleep(8)
        for task in asyncio.all_tasks():
            print("TASK", task.get_name(), file=sys.stderr)
            task.print_stack(file=sys.stderr)
    t = asyncio.get_running_loop().create_task(dump())
    yield
    t.cancel()
