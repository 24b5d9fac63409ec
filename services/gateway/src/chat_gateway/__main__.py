from chat_gateway.main import run

run()
