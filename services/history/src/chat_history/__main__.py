from chat_history.main import run

run()
